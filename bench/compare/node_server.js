// Reference: the Node.js socket.io 4.x server running the bench's tiny app.
//
//   node bench/compare/node_server.js PORT
//
// `message` -> `message-back` (same arguments), `message-with-ack` -> ack with
// the same arguments, `broadcast` -> `broadcast` to every connected socket
// (one room, encoded once by socket.io's adapter).  WebSocket only, no
// permessage-deflate, default heartbeat (25 s / 20 s): the same settings the
// UMOC and python-socketio bench servers use.
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3000);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  maxHttpBufferSize: 1e6,
});

io.on("connection", (socket) => {
  socket.join("all");
  socket.on("message", (...args) => socket.emit("message-back", ...args));
  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack(...args);
  });
  socket.on("broadcast", (...args) => io.to("all").emit("broadcast", ...args));
});

httpServer.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
process.on("SIGTERM", () => process.exit(0));
