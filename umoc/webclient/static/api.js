// The server's HTTP endpoints and its Socket.IO connection (docs/api.md).

const SESSION_KEY = 'umoc.session';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class RequestError extends Error {
  constructor(message, extra = {}) {
    super(message);
    this.name = 'RequestError';
    Object.assign(this, extra);
  }
}

// One JSON request: the body (when given) as JSON, the answer's JSON back, a `RequestError` with
// the server's `error` text (and `totp_required`, which only a login answers) when it refuses.
async function requestJson(method, path, body, headers = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {...(body === undefined ? {} : {'Content-Type': 'application/json'}), ...headers},
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new RequestError('The server cannot be reached');
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data && typeof data.error === 'string' ? data.error : `HTTP ${response.status}`;
    throw new RequestError(message, {status: response.status, totpRequired: Boolean(data && data.totp_required)});
  }
  return data;
}

function postJson(path, body, headers = {}) {
  return requestJson('POST', path, body, headers);
}

// The device token a login answered, kept across logouts: this browser's later logins are known to
// the account, so guesses at it from elsewhere never hold its owner back (ratelimits.login_account).
const DEVICE_KEY = 'umoc.device';

async function login(username, password, totp = '') {
  const body = {username, password};
  if (totp) body.totp = totp;
  try {
    const device = localStorage.getItem(DEVICE_KEY);
    if (device) body.device_token = device;
  } catch {
    // no storage: logs in as a client the account does not know yet
  }
  const data = await postJson('/api/login', body);
  try {
    if (data && typeof data.device_token === 'string') localStorage.setItem(DEVICE_KEY, data.device_token);
  } catch {
    // as above
  }
  return data;
}

export const http = {
  register: (username, password) => postJson('/api/register', {username, password}),
  login,
  logout: (session) => postJson('/api/logout', {sessionID: session.sessionID, token: session.token}),
  // TOTP of a password account: 'setup' -> {secret, otpauth_uri}; 'enable' / 'disable' with {code}.
  totp: (session, step, body = {}) => postJson(`/api/account/totp/${step}`, body, {
    'X-Session-ID': session.sessionID, 'X-Session-Token': session.token,
  }),
  // {"enabled", "provider"}: whether the server offers sign-in with an OpenID provider (auth.oidc).
  oidcConfig: async () => {
    try {
      const response = await fetch('/api/oidc/config', {cache: 'no-store'});
      return response.ok ? await response.json() : {enabled: false};
    } catch {
      return {enabled: false};
    }
  },
};

// The admin API's reports (administrators only; anybody else gets 403, `forbidden`).
function adminFetch(session, method, path, body) {
  return requestJson(method, `/api/admin/${path}`, body,
    {'X-Session-ID': session.sessionID, 'X-Session-Token': session.token});
}

export const admin = {
  // {reports: [report], next_cursor}: open reports, newest first.
  openReports: (session, cursor = '') => adminFetch(
    session, 'GET', `reports?status=open&limit=50${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`),
  // action: dismiss | delete_message | ban_member | deactivate_user -> {report}
  resolveReport: (session, reportId, action, note) => adminFetch(
    session, 'POST', `reports/${encodeURIComponent(reportId)}/resolve`, note ? {action, note} : {action}),
};

// The OIDC callback hands the session over in the URL's fragment (#oidc=<base64url JSON>), or a
// refusal (#oidc_error=<message>); either is taken out of the address bar at once.
export function takeOidcResult() {
  const hash = window.location.hash;
  if (!hash.startsWith('#oidc')) return {session: null, error: ''};
  window.history.replaceState(null, '', window.location.pathname + window.location.search);
  const [key, value = ''] = hash.slice(1).split('=', 2);
  if (key === 'oidc_error') return {session: null, error: decodeURIComponent(value)};
  try {
    const text = atob(value.replace(/-/g, '+').replace(/_/g, '/'));
    const session = JSON.parse(text);
    if (session && typeof session.sessionID === 'string' && typeof session.token === 'string') {
      return {session, error: ''};
    }
  } catch {
    // fall through
  }
  return {session: null, error: 'The sign-in did not finish; sign in again'};
}

// -- the login session, kept in localStorage so a reload stays logged in --------------

export function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    if (s && typeof s.sessionID === 'string' && typeof s.token === 'string'
        && !(typeof s.expires_at === 'number' && s.expires_at * 1000 < Date.now())) {
      return s;
    }
  } catch {
    // unreadable: treated as logged out
  }
  return null;
}

export function saveSession(session) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession() {
  localStorage.removeItem(SESSION_KEY);
}

// -- files ---------------------------------------------------------------------------

export const isFileId = (id) => typeof id === 'string' && UUID.test(id);

/**
 * The file's bytes as a blob: URL, for previews and downloads alike.  The session goes in
 * headers, never in a URL: a link with the token in it would end up in the browser's history,
 * its downloads list, and any log or proxy that sees the address (issue 22, G14).
 */
export async function fetchFileUrl(fileId, session, thumbnail = false) {
  if (!isFileId(fileId)) throw new RequestError('Bad file id');
  const path = thumbnail ? `/api/files/${fileId}/thumbnail?size=medium` : `/api/files/${fileId}`;
  const response = await fetch(path, {
    headers: {'X-Session-ID': session.sessionID, 'X-Session-Token': session.token},
    cache: 'no-store',
  });
  if (!response.ok) throw new RequestError(`HTTP ${response.status}`, {status: response.status});
  return URL.createObjectURL(await response.blob());
}

/** A link preview's image (UMOC's copy, `/api/previews/<uuid>`) as a blob: URL; the session in headers. */
export async function fetchPreviewImageUrl(imageUrl, session) {
  const id = typeof imageUrl === 'string' && imageUrl.startsWith('/api/previews/') ? imageUrl.slice(14) : '';
  if (!isFileId(id)) throw new RequestError('Bad preview image');
  const response = await fetch(`/api/previews/${id}`, {
    headers: {'X-Session-ID': session.sessionID, 'X-Session-Token': session.token},
    cache: 'no-store',
  });
  if (!response.ok) throw new RequestError(`HTTP ${response.status}`, {status: response.status});
  return URL.createObjectURL(await response.blob());
}

/** PUT the file to the upload URL from upload_file_prepare; onProgress(0..100). */
export function uploadFile(uploadUrl, uploadToken, file, fileType, onProgress) {
  return new Promise((resolve, reject) => {
    if (typeof uploadUrl !== 'string' || !uploadUrl.startsWith('/api/upload/')) {
      reject(new RequestError('Unexpected upload URL'));
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', uploadUrl);
    xhr.setRequestHeader('Authorization', `Bearer ${uploadToken}`);
    xhr.setRequestHeader('Content-Type', fileType);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(Math.round((e.loaded / e.total) * 100));
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(100);
        resolve();
        return;
      }
      let message = `Upload failed (HTTP ${xhr.status})`;
      try {
        message = JSON.parse(xhr.responseText).error || message;
      } catch {
        // not JSON
      }
      reject(new RequestError(message, {status: xhr.status}));
    });
    xhr.addEventListener('error', () => reject(new RequestError('Upload failed: connection lost')));
    xhr.addEventListener('abort', () => reject(new RequestError('Upload cancelled')));
    xhr.send(file);
  });
}

// -- the socket ------------------------------------------------------------------------

/**
 * One Socket.IO connection with the stock client's default options (it reconnects by
 * itself).  `handlers` maps server -> client event names to functions; every name in it
 * is subscribed, so a new server event is one more entry there.  `hooks` gets connect,
 * disconnect, refused (the server turned the session away) and reconnecting(reason?).
 */
export class Connection {
  constructor(session, handlers, hooks) {
    /* global io */
    this.socket = io({auth: {sessionID: session.sessionID, token: session.token}});
    for (const [event, handler] of Object.entries(handlers)) {
      this.socket.on(event, (data) => handler(data));
    }
    this.socket.on('connect', () => hooks.connect());
    this.socket.on('disconnect', (reason) => hooks.disconnect(reason));
    this.socket.on('connect_error', (err) => {
      if (this.socket.active) {
        hooks.reconnecting(); // the network: the client retries by itself
      } else if (/session/i.test(err.message) && !/too many/i.test(err.message)) {
        hooks.refused(err.message); // the server turned the session away: log in again
      } else {
        // Refused for now (too many connections or attempts): try again later.
        hooks.reconnecting(err.message);
        clearTimeout(this.retry);
        this.retry = setTimeout(() => this.socket.connect(), 10000);
      }
    });
    this.socket.io.on('reconnect_attempt', () => hooks.reconnecting());
  }

  /**
   * Emit with an acknowledgement; resolves with the ack payload or rejects with the
   * server's error.  The server also emits the named response event (`chats`, ...):
   * this client takes answers from the ack only, and does not subscribe to those.
   */
  async request(event, payload = {}, timeout = 20000) {
    let reply;
    try {
      reply = await this.socket.timeout(timeout).emitWithAck(event, payload);
    } catch {
      throw new RequestError('No answer from the server');
    }
    if (reply && typeof reply === 'object' && !Array.isArray(reply) && typeof reply.error === 'string') {
      const {error, ...extra} = reply;
      throw new RequestError(error, extra);
    }
    return reply;
  }

  close() {
    clearTimeout(this.retry);
    this.socket.removeAllListeners();
    this.socket.io.removeAllListeners();
    this.socket.disconnect();
  }
}
