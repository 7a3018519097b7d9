import type { Queue } from 'bullmq';

/**
 * BullMQ starts a Queue's connection once (`INFO`, for the version check) and keeps that promise: if
 * Redis is frozen or down at that moment, every later call on that Queue fails with the same old error,
 * long after Redis is back. A cached Queue whose start failed is therefore dropped, so the next call
 * makes a fresh one. (The client is shared: closing the dropped Queue only detaches it.)
 */
export function dropOnFailedStart<K, Q extends Queue>(cache: Map<K, Q>, key: K, queue: Q): void {
  queue.waitUntilReady().catch(() => {
    if (cache.get(key) === queue) cache.delete(key);
    void queue.close().catch(() => undefined);
  });
}
