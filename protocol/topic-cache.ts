/**
 * A bounded memo of "does this topic match" answers. Topics on a bus repeat endlessly, so each matcher list
 * answers from the cache after the first time instead of splitting strings on every message.
 */

/** Most topics remembered per cache; when full it starts over (topics are few in practice). */
const MAX_ENTRIES = 4096;

/** Memoises a pure predicate over topic strings. */
export function memoTopicPredicate(predicate: (topic: string) => boolean): (topic: string) => boolean {
  let cache = new Map<string, boolean>();
  return (topic) => {
    let hit = cache.get(topic);
    if (hit === undefined) {
      hit = predicate(topic);
      if (cache.size >= MAX_ENTRIES) cache = new Map();
      cache.set(topic, hit);
    }
    return hit;
  };
}
