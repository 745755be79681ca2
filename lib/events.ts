import { EventEmitter } from 'node:events';
import { FdHandle } from './handle';
import * as validate from './validate';

/** Event names and the arguments their listeners get (an interface will do). */
export type EventArgs<Events> = { [E in keyof Events]: unknown[] };

/** A listener of one event of a handle: its arguments are the event's (FdChannelEvents, ...). */
export type HandleEventListener<Args extends unknown[]> = (...args: Args) => void;

/**
 * A handle with events. The emitter is private so that only the events a
 * class declares exist: a misspelt name is a TypeError, not a listener that
 * never runs, and nobody outside can emit.
 */
export abstract class EventedFdHandle<Events extends EventArgs<Events>> extends FdHandle {
  readonly #emitter = new EventEmitter();
  readonly #names: readonly (keyof Events & string)[];

  protected constructor(fd: number, kind: string, names: readonly (keyof Events & string)[]) {
    super(fd, kind);
    this.#names = names;
  }

  on<E extends keyof Events & string>(event: E, listener: HandleEventListener<Events[E]>): this {
    this.#emitter.on(this.#event(event), this.#listener(listener));
    return this;
  }

  once<E extends keyof Events & string>(event: E, listener: HandleEventListener<Events[E]>): this {
    this.#emitter.once(this.#event(event), this.#listener(listener));
    return this;
  }

  off<E extends keyof Events & string>(event: E, listener: HandleEventListener<Events[E]>): this {
    this.#emitter.off(this.#event(event), this.#listener(listener));
    return this;
  }

  listenerCount(event: keyof Events & string): number {
    return this.#emitter.listenerCount(this.#event(event));
  }

  protected emit<E extends keyof Events & string>(event: E, ...args: Events[E]): void {
    this.#emitter.emit(event, ...args);
  }

  /**
   * An error nobody asked to hear of goes to the process as a warning: an
   * 'error' with no listener must neither tear down a healthy handle (the
   * throw EventEmitter makes would land in its read loop) nor become an
   * unhandled rejection.
   */
  protected emitError(error: Error): void {
    if (this.#emitter.listenerCount('error') > 0) this.#emitter.emit('error', error);
    else process.emitWarning(error);
  }

  /** Runs `changed` after a listener is added or removed (a read loop starts or stops with them). */
  protected onListenersChanged(changed: (event: keyof Events & string, added: boolean) => void): void {
    this.#emitter.on('newListener', (event: keyof Events & string) => queueMicrotask(() => changed(event, true)));
    this.#emitter.on('removeListener', (event: keyof Events & string) => changed(event, false));
  }

  #event(event: unknown): string {
    return validate.oneOf('event', event, this.#names);
  }

  #listener(listener: unknown): (...args: unknown[]) => void {
    return validate.functionArg<(...args: unknown[]) => void>('listener', listener);
  }
}
