/** Raised when an operation does not settle within its deadline. */
export class DeadlineError extends Error {
  override readonly name = "DeadlineError";
}

/**
 * Settles with `work`, or rejects with `DeadlineError` after `ms`. The work itself is not cancelled (a
 * KV or Cache API call cannot be), only no longer waited for.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  // One promise and one timer (every tier read on the hot path goes through here): not a race of two
  // promises plus a `finally`.
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new DeadlineError(`${what} took longer than ${ms} ms`)), ms);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
