/**
 * Sets `key` in `map` as its most recent entry, then drops the oldest entries (insertion order) past `max`:
 * the isolate's bounded memories (hit-for-pass keys, invalidations, recent fills, purge views).
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > max) {
    const oldest = map.keys().next().value;
    if (oldest === undefined) break;
    map.delete(oldest as K);
  }
}
