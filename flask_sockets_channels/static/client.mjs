// The browser client as an ES module: `import { Socket } from ".../client.mjs"`.
// client.js defines it (on globalThis, as a plain script does for window).
import "./client.js";

export const { Socket, after } = globalThis.FlaskSocketsChannels;
