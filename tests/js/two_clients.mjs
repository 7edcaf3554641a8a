// Two stock socket.io-client 4.x sockets against a running UMOC server.
//
//   node tests/js/two_clients.mjs <base url> <user a> <user b>
//
// Registers and logs in both users over HTTP (fetch), connects them with the
// client's default options (long-polling first, then the upgrade to
// WebSocket), walks ping / verify_session, makes them friends
// (add_contact / accept_contact), exchanges a message each way, edits, reacts and
// replies (each side seeing the other's change), drops one
// client's transport to check connection state recovery, then disconnects.  Prints one JSON line
// with what it saw; the trial test (tests/test_js_client.py) asserts on it.
import { io } from "socket.io-client";

const [base, nameA, nameB] = process.argv.slice(2);
const password = "correct horse battery";
const TIMEOUT = 10000;

async function post(path, body) {
  const response = await fetch(base + path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return [response.status, await response.json()];
}

async function login(username) {
  await post("/api/register", { username, password });
  const [status, body] = await post("/api/login", { username, password });
  if (status !== 200) throw new Error(`login ${username}: ${status} ${JSON.stringify(body)}`);
  return body;
}

function next(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${TIMEOUT} ms`)), TIMEOUT);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

async function upgraded(socket) {
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") await next(engine, "upgrade");
  return engine.transport.name;
}

const a = await login(nameA);
const b = await login(nameB);
// One authenticates with the CONNECT payload, the other with the URL query.
const sa = io(base, { auth: { sessionID: a.sessionID, token: a.token }, reconnectionDelay: 100 });
const sb = io(base, { query: { sessionID: b.sessionID, token: b.token }, reconnectionDelay: 100 });
const helloA = next(sa, "connection_successful");
const helloB = next(sb, "connection_successful");
const result = { hello: [(await helloA)[0], (await helloB)[0]] };
result.transports = [await upgraded(sa), await upgraded(sb)];

const timestamp = Date.now();
const pongEvent = next(sa, "pong");
result.pong = await sa.timeout(TIMEOUT).emitWithAck("ping", { sessionID: a.sessionID, timestamp });
result.pongEvent = (await pongEvent)[0];
result.sentTimestamp = timestamp;
result.status = await sb.timeout(TIMEOUT).emitWithAck("verify_session", { sessionID: b.sessionID, token: b.token });
result.badStatus = await sa.timeout(TIMEOUT).emitWithAck("verify_session", { sessionID: a.sessionID, token: "nope" });

// Friends: a asks, b accepts; each side hears of it.
const request = next(sb, "contact_request");
const acceptedForA = next(sa, "contact_accepted");
result.contactAdded = await sa.timeout(TIMEOUT).emitWithAck("add_contact", {
  sessionID: a.sessionID, contact_username: nameB,
});
result.contactRequest = (await request)[0];
result.contactAccepted = await sb.timeout(TIMEOUT).emitWithAck("accept_contact", {
  sessionID: b.sessionID, contact_id: a.user_id,
});
result.contactAcceptedForA = (await acceptedForA)[0];

// Messages both ways: the recipient and the sender's own socket receive new_message.
async function send(from, fromLogin, to, toLogin, content) {
  const received = next(to, "new_message");
  const echoed = next(from, "new_message");
  const ack = await from.timeout(TIMEOUT).emitWithAck("send_message", {
    sessionID: fromLogin.sessionID, recipient_id: toLogin.user_id, content, is_group: false, type: "text",
  });
  const args = await received;
  // Recovery is on: hub events carry the offset as an extra argument, which handlers may ignore.
  return { ack, received: args[0], echoed: (await echoed)[0], offsetIsString: typeof args[1] === "string" };
}
result.messages = [
  await send(sa, a, sb, b, "Hello there!"),
  await send(sb, b, sa, a, "Hi, " + nameA),
];

// Messaging v2: a edits its message, b reacts to it and replies, a reacts to the reply;
// each side sees the other's change, and history shows the result.
async function both(from, fromLogin, to, event, payload) {
  const seen = next(to, event);
  const echoed = next(from, event);
  const ack = await from.timeout(TIMEOUT).emitWithAck(event === "new_message" ? "send_message" : payload.event, {
    sessionID: fromLogin.sessionID, ...payload.fields,
  });
  return { ack, seen: (await seen)[0], echoed: (await echoed)[0] };
}
const first = result.messages[0].ack;
result.edited = await both(sa, a, sb, "message_edited", {
  event: "edit_message", fields: { message_id: first.message_id, content: "Hello there! (edited)" },
});
result.reacted = await both(sb, b, sa, "reaction_updated", {
  event: "add_reaction", fields: { message_id: first.message_id, emoji: "👍" },
});
result.replied = await both(sb, b, sa, "new_message", {
  fields: { recipient_id: a.user_id, content: "A reply", reply_to: first.message_id, mentions: [a.user_id] },
});
result.reactedToReply = await both(sa, a, sb, "reaction_updated", {
  event: "add_reaction", fields: { message_id: result.replied.ack.message_id, emoji: "🎉" },
});
result.historyForB = await sb.timeout(TIMEOUT).emitWithAck("get_chat_history", {
  sessionID: b.sessionID, chat_id: a.user_id,
});

// Drop b's transport: the client reconnects by itself and asks to recover.
const pidBefore = sb._pid;
const reconnected = next(sb, "connect");
sb.io.engine.close();
await reconnected;
result.recovered = sb.recovered === true && sb._pid === pidBefore;
result.afterRecovery = await sb.timeout(TIMEOUT).emitWithAck("ping", { sessionID: b.sessionID, timestamp: 1 });

const closed = [next(sa, "disconnect"), next(sb, "disconnect")];
sa.disconnect();
sb.disconnect();
result.disconnectReasons = (await Promise.all(closed)).map((args) => args[0]);
console.log(JSON.stringify(result));
process.exit(0);
