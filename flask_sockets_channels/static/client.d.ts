// Types of the flask-sockets-channels browser client (client.mjs, and
// window.FlaskSocketsChannels for the plain script client.js).

/** "connecting" (the first time), "open", "reconnecting", "closed" (for good). */
export type State = "connecting" | "open" | "reconnecting" | "closed";

/** A room's position: "epoch:offset", opaque but for comparing. */
export type Position = string;

export interface Options {
  /** First reconnect delay bound in ms (each delay is drawn from 0..bound). Default 500. */
  minDelay?: number;
  /** The bound never grows past this, in ms. Default 30000. */
  maxDelay?: number;
  /** A close before open (a refused handshake) counts as this many failures. Default 2. */
  refusedAttempts?: number;
  /** Close codes after which it never reconnects. Default [1003, 1008]; add the app's 4xxx. */
  stopCodes?: number[];
  /** Messages sent while not connected, kept at most. Default 100. */
  queueSize?: number;
  /** When the queue is full: drop the oldest, or make send() throw. Default "drop-oldest". */
  queueOverflow?: "drop-oldest" | "error";
  /** ms without any frame (the server's heartbeat included) before it reconnects; 0: never. Default 0. */
  idleTimeout?: number;
  /** The query parameter that carries the last positions, JSON {room: position}. Default "since". */
  sinceParam?: string;
  /** Subprotocols to offer. */
  protocols?: string | string[];
}

export interface MessageMeta {
  /** The hub room, for a hub message. */
  room?: string;
  /** Its position in the room, for a hub message. */
  position?: Position;
}

export interface Recovery {
  room: string;
  /** Whether every message after the page's position was delivered. */
  recovered: boolean;
  /** Why not: "too old", "epoch changed", "unknown position", "too many". */
  reason?: string | null;
  /** Where the room is now: the page's state starts over from here when not recovered. */
  position?: Position;
}

export class Socket {
  constructor(url: string, options?: Options);
  readonly url: string;
  readonly state: State;
  /** The last position received, per room. */
  readonly positions: Record<string, Position>;
  /** Send a string as it is, anything else as JSON; queued while not open. Throws once closed, or when the queue is full with queueOverflow "error". */
  send(data: unknown): void;
  /** Close for good. */
  close(): void;
  on(event: "state", listener: (state: State) => void): this;
  on(event: "message", listener: (data: any, meta: MessageMeta) => void): this;
  on(event: "recovered", listener: (recovery: Recovery) => void): this;
  on(event: "closed", listener: (event: { code: number; reason: string }) => void): this;
  off(event: string, listener: (...args: any[]) => void): this;
}

/** Whether position `a` comes after `b` (true for another epoch, or no `b`). */
export function after(a: Position, b?: Position): boolean;
