/** A small typed event emitter that runs in Node and the browser. */

/** Listener of one event. */
export type Listener<T> = (value: T) => void

/** Emits events named by the keys of `Events`, each with one value. */
export class Emitter<Events extends Record<string, unknown>> {
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>()

  /** Call `fn` on every `event`; returns a function that removes it. */
  on<K extends keyof Events> (event: K, fn: Listener<Events[K]>): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) {
      set = new Set()
      this.listeners.set(event, set)
    }
    set.add(fn)
    return () => this.off(event, fn)
  }

  /** Remove a listener. */
  off<K extends keyof Events> (event: K, fn: Listener<Events[K]>): void {
    this.listeners.get(event)?.delete(fn)
  }

  protected emit<K extends keyof Events> (event: K, value: Events[K]): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) (fn as Listener<Events[K]>)(value)
  }
}
