// UMOC web client: login, contacts, chats, conversations, files and groups.
//
// Only events the server has today are used (umoc/events/*.py ROUTES), Messaging v2
// included (edits, replies, reactions, mentions, delivery receipts, unblock/remove,
// profiles and avatars).
// To support a new one, add its server -> client handler to SERVER_EVENTS below, and
// (for message features) an entry to MESSAGE_ACTIONS.
//
// Everything users wrote is put on the page as text (dom.js h() / textContent).
//
// Reports (issue 31): any message of someone else can be reported (`report`); an administrator
// (whose own profile says is_admin) gets a Reports button listing the open ones, each
// resolved through the admin API (dismiss, delete the message, ban from the group, deactivate).

import {
  Connection, RequestError, admin, clearSession, fetchFileUrl, fetchPreviewImageUrl, http, isFileId, loadSession,
  saveSession, takeOidcResult, uploadFile,
} from './api.js';
import {$, dayOf, fill, h, lastSeenText, refill, sizeText, timeOf} from './dom.js';

const PAGE_SIZE = 30;
const TYPING_SEND_EVERY = 3000; // ms between typing=true while the user keeps typing
const TYPING_IDLE = 4000; // ms of no keystrokes before typing=false
const TYPING_SHOWN = 6000; // ms a peer's indicator stays without a refresh
const REACTION_EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
const MAX_MENTIONS = 50; // send_message's bound
const MENTION_CHOICES = 6; // members offered at once after "@"
const USERNAME_AT = /(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_.-]+)/g; // "@alice" in a text
const REACTION_NAMES = {'👍': 'thumbs up', '❤️': 'heart', '😂': 'laughing', '😮': 'surprised', '😢': 'sad', '🎉': 'party'};

const state = {
  session: null, // {sessionID, token, user_id, username, expires_at}
  conn: null,
  chats: new Map(), // chat key -> get_chats entry
  contacts: new Map(), // user_id -> get_contacts entry
  outgoing: new Set(), // user ids we asked: a NEW contact does not say who asked
  convs: new Map(), // chat key -> {list: [message], byId: Map, page, totalPages}
  groups: new Map(), // group id -> chat_info (group shape)
  current: null, // chat key on screen
  thread: null, // the open thread: {key, id, root, replies}
  typing: new Map(), // chat key -> Map(user_id -> {username, timer})
  lastMessageAt: 0, // ms epoch of the newest message seen: where `sync` starts after a reconnect
  everConnected: false,
  fileUrls: new Map(), // file_id -> blob: URL of the image
  composing: null, // {mode: 'edit' | 'reply', message} while the composer edits or replies
  profile: null, // our own profile (get_profile / profile_updated)
  people: new Map(), // user_id -> the newest profile_updated seen for them
  avatars: new Map(), // avatar file_id -> Promise of its blob: URL (one download per avatar)
  avatarReady: new Map(), // avatar file_id -> blob: URL once downloaded
  avatarChoice: null, // the profile form's pending change: {file, url} or 'clear'
  requests: new Map(), // group id -> Map(user_id -> username): join_requested seen, not yet answered
  directory: {query: '', cursor: null}, // the last list_public_groups asked
  memberCursors: new Map(), // group id -> get_members' next_cursor (null: all listed)
};

const keyOf = (isGroup, id) => `${isGroup ? 'g' : 'd'}${id}`;
const parseKey = (key) => ({isGroup: key[0] === 'g', id: Number(key.slice(1))});
const myId = () => state.session?.user_id;

function chatKeyOfMessage(m) {
  if (m.is_group) return keyOf(true, m.recipient_id);
  return keyOf(false, m.sender_id === myId() ? m.recipient_id : m.sender_id);
}

/** A user's display name when they set one, else their username. */
const nameOf = (who) => who?.display_name || who?.username || '';

/**
 * The newest profile we know for a user: ours, a profile_updated, their contact
 * entry, a group member entry, else `fallback` (e.g. what a message carried).
 */
function profileOf(userId, fallback = null) {
  if (userId === myId() && state.profile) return state.profile;
  const known = state.people.get(userId) || state.contacts.get(userId);
  if (known) return known;
  for (const info of state.groups.values()) {
    const member = info.members?.find((m) => m.user_id === userId);
    if (member) return member;
  }
  return fallback;
}

// -- avatars ------------------------------------------------------------------------------

const AVATAR_URL = /^\/api\/files\/([0-9a-f-]{36})$/i;

/** The file id in an `avatar_url` ("/api/files/<id>"), or null. */
function avatarFileId(url) {
  const match = AVATAR_URL.exec(typeof url === 'string' ? url : '');
  return match && isFileId(match[1]) ? match[1] : null;
}

/** Download an avatar once (with the session in headers) and keep its blob: URL. */
function loadAvatar(fileId) {
  let pending = state.avatars.get(fileId);
  if (!pending) {
    pending = fetchFileUrl(fileId, state.session).then((url) => {
      state.avatarReady.set(fileId, url);
      return url;
    });
    state.avatars.set(fileId, pending); // a failure is remembered too: no retry on every render
  }
  return pending;
}

/**
 * A round avatar: the picture when the user set one, else their initial.  Decorative
 * (aria-hidden): the name is always written next to it.  `userId` lets a
 * profile_updated find and redraw it.
 */
function avatar(who, {size = '', group = false, online = false, userId = null} = {}) {
  const name = group ? who?.name : nameOf(who);
  const el = h('span', {
    class: `avatar${size ? ` ${size}` : ''}${group ? ' group' : ''}${online ? ' online' : ''}`,
    'aria-hidden': 'true',
    dataset: userId === null ? null : {avatarUser: String(userId)},
  }, (name || '?').slice(0, 1).toUpperCase());
  const fileId = avatarFileId(who?.avatar_url);
  if (fileId) {
    const img = h('img', {class: 'avatar-img', alt: ''});
    const ready = state.avatarReady.get(fileId);
    if (ready) img.src = ready;
    else loadAvatar(fileId).then((url) => { img.src = url; }).catch(() => img.remove());
    el.append(img);
  }
  return el;
}

function chatName(key) {
  const chat = state.chats.get(key);
  if (chat) return chat.is_group ? chat.name : nameOf(chat);
  const {isGroup, id} = parseKey(key);
  if (!isGroup && state.contacts.has(id)) return nameOf(state.contacts.get(id));
  return isGroup ? 'Group' : 'Chat';
}

function senderName(m) {
  return nameOf(profileOf(m.sender_id, {username: m.sender_username, display_name: m.display_name}))
    || m.sender_username;
}

// -- feedback ---------------------------------------------------------------------------

let toastTimer = null;
function showError(err) {
  const toast = $('toast');
  toast.textContent = err instanceof Error ? err.message : String(err);
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
}

function announce(text) {
  $('announce').textContent = text;
}

function request(event, payload) {
  return state.conn.request(event, payload);
}

// -- login ------------------------------------------------------------------------------

function showLogin(message = '') {
  $('app-view').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message;
  $('login-username').focus();
}

async function submitLogin(register) {
  const username = $('login-username').value.trim();
  const password = $('login-password').value;
  const error = $('login-error');
  error.textContent = '';
  if (!/^[A-Za-z0-9_.-]{3,32}$/.test(username)) {
    error.textContent = 'Username: 3 to 32 letters, digits, _ . or -';
    $('login-username').focus();
    return;
  }
  if (password.length < 8) {
    error.textContent = 'Password: at least 8 characters';
    $('login-password').focus();
    return;
  }
  for (const button of [$('login-button'), $('register-button')]) button.disabled = true;
  try {
    if (register) await http.register(username, password);
    const login = await http.login(username, password, $('login-totp').value.trim());
    saveSession(login);
    $('login-password').value = '';
    $('login-totp').value = '';
    $('login-totp-row').hidden = true;
    start(login);
  } catch (err) {
    if (err.totpRequired) {
      // The password was right and the account has TOTP on: ask for the code.
      $('login-totp-row').hidden = false;
      $('login-totp').focus();
    }
    error.textContent = err.status === 409 ? 'That username is taken' : err.message;
  } finally {
    for (const button of [$('login-button'), $('register-button')]) button.disabled = false;
  }
}

async function logout() {
  const session = state.session;
  stop();
  clearSession();
  showLogin('You are logged out.');
  if (session) {
    try {
      await http.logout(session);
    } catch {
      // the session is forgotten here either way
    }
  }
}

function stop() {
  state.conn?.close();
  state.conn = null;
  for (const url of [...state.fileUrls.values(), ...state.avatarReady.values()]) URL.revokeObjectURL(url);
  if (state.avatarChoice?.url) URL.revokeObjectURL(state.avatarChoice.url);
  for (const typing of state.typing.values()) for (const t of typing.values()) clearTimeout(t.timer);
  Object.assign(state, {
    session: null, current: null, thread: null, lastMessageAt: 0, everConnected: false,
    chats: new Map(), contacts: new Map(), convs: new Map(), groups: new Map(), typing: new Map(),
    fileUrls: new Map(), outgoing: new Set(), composing: null, profile: null,
    people: new Map(), avatars: new Map(), avatarReady: new Map(), avatarChoice: null,
    requests: new Map(), directory: {query: '', cursor: null}, memberCursors: new Map(),
  });
  fill($('directory-list'));
  closeMentions();
  pendingDeliveries.clear();
  fill($('chat-list'));
  fill($('contact-list'));
  memberChoices = null;
  renderGroupMemberChoices();
  fill($('message-list'));
  $('reports-button').hidden = true;
  for (const id of ['report-dialog', 'reports-dialog']) if ($(id).open) $(id).close();
  closeChat(false);
}

function start(session) {
  state.session = session;
  state.outgoing = new Set(loadOutgoing());
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('me').textContent = session.username;
  $('reports-button').hidden = true;
  setConnection('Connecting…', 'connecting');
  state.conn = new Connection(session, SERVER_EVENTS, {
    connect: onConnect,
    disconnect: () => setConnection('Offline: reconnecting…', 'offline'),
    reconnecting: (reason) => setConnection(reason ? `Not connected: ${reason}` : 'Offline: reconnecting…', 'offline'),
    refused: (message) => {
      stop();
      clearSession();
      showLogin(`Please log in again (${message || 'session ended'}).`);
    },
  });
}

// -- reports ----------------------------------------------------------------------------

let reporting = null; // the message the report dialog is about
let reportsCursor = null; // the admin list's next page

function openReport(m) {
  reporting = m;
  const quote = m.type === 'text' ? preview(m.content, 200) : lastMessageText({...m, sender_id: null});
  $('report-quote').textContent = `${senderName(m) || 'Someone'}: ${quote}`;
  $('report-category').value = 'spam';
  $('report-reason').value = '';
  $('report-error').textContent = '';
  $('report-dialog').showModal();
  $('report-category').focus();
}

async function sendReport(event) {
  event.preventDefault();
  if (!reporting) return;
  const payload = {target: 'message', message_id: reporting.message_id, category: $('report-category').value};
  const reason = $('report-reason').value.trim();
  if (reason) payload.reason = reason;
  $('report-send').disabled = true;
  try {
    await request('report', payload);
  } catch (err) {
    $('report-error').textContent = err.message;
    return;
  } finally {
    $('report-send').disabled = false;
  }
  reporting = null;
  $('report-dialog').close();
  announce('Report sent to the administrators');
  showError('Thank you: the administrators will look at it.');
}


const RESOLUTIONS = [
  {action: 'dismiss', label: 'Dismiss', available: () => true},
  {action: 'delete_message', label: 'Delete message', available: (r) => Boolean(r.message_id),
    confirm: 'Delete the reported message for everyone?'},
  {action: 'ban_member', label: 'Ban from group', available: (r) => r.is_group && r.chat_id !== null && r.user_id !== null,
    confirm: 'Ban this account from the group?'},
  {action: 'deactivate_user', label: 'Deactivate account', className: 'danger', available: (r) => r.user_id !== null,
    confirm: 'Deactivate this account? It can no longer log in.'},
];

function renderReport(r) {
  const evidence = r.evidence;
  const what = evidence
    ? `${evidence.type === 'text' ? preview(evidence.content, 300) : `(${evidence.type})`}`
    : `${r.target} ${r.target === 'user' ? r.user_id : r.chat_id}`;
  const buttons = RESOLUTIONS.filter((a) => a.available(r)).map((a) => h('button', {
    type: 'button',
    class: `small ${a.className || 'secondary'}`,
    dataset: {resolve: a.action, focus: `resolve-${a.action}-${r.report_id}`},
    onclick: () => resolveReport(r, a).catch(showError),
  }, a.label));
  return h('li', {class: 'report', dataset: {report: r.report_id}},
    h('div', {class: 'report-head'},
      h('span', {class: 'tag'}, r.category),
      h('span', {class: 'muted'}, `${r.target} · reported by user ${r.reporter_id} · ${dayOf(r.created_at)} ${timeOf(r.created_at)}`)),
    h('p', {class: 'report-quote'},
      evidence ? `User ${evidence.sender_id}${r.is_group ? ` in group ${r.chat_id}` : ''}: ` : '', what),
    r.reason ? h('p', {class: 'help'}, `Reason: ${r.reason}`) : null,
    h('div', {class: 'button-row', role: 'group', 'aria-label': `Resolve report ${r.report_id}`}, buttons));
}

async function loadReports(more = false) {
  const list = $('reports-list');
  if (!more) {
    reportsCursor = null;
    list.replaceChildren();
  }
  $('reports-status').textContent = 'Loading…';
  const page = await admin.openReports(state.session, more ? reportsCursor || '' : '');
  for (const r of page.reports) list.append(renderReport(r));
  reportsCursor = page.next_cursor;
  $('reports-more').hidden = !reportsCursor;
  $('reports-status').textContent = list.children.length ? '' : 'No open reports.';
}

async function openReports() {
  $('reports-dialog').showModal();
  await loadReports();
}

async function resolveReport(r, resolution) {
  if (resolution.confirm && !window.confirm(resolution.confirm)) return;
  await admin.resolveReport(state.session, r.report_id, resolution.action);
  document.querySelector(`#reports-list [data-report="${CSS.escape(r.report_id)}"]`)?.remove();
  announce(`Report ${r.report_id} resolved: ${resolution.label}`);
  if (!$('reports-list').children.length) $('reports-status').textContent = 'No open reports.';
}

function setConnection(text, kind) {
  const el = $('connection');
  el.textContent = text;
  el.dataset.state = kind;
}

async function onConnect() {
  setConnection('Online', 'online');
  const reconnect = state.everConnected;
  state.everConnected = true;
  try {
    if (reconnect) await catchUp();
    await Promise.all([loadChats(), loadContacts(), loadProfile()]);
    if (reconnect && state.current) await refreshConversation(state.current);
    if (!reconnect) openFromHash();
  } catch (err) {
    showError(err);
  }
}

/** After a reconnect: the messages stored while we were away (`sync`), oldest first. */
async function catchUp() {
  if (!state.lastMessageAt) return;
  // Timestamps have second precision: start a second early, duplicates are dropped by id.
  let since = new Date(state.lastMessageAt - 1000).toISOString();
  for (let round = 0; round < 20; round++) {
    const result = await request('sync', {since, limit: 200});
    for (const message of result.messages) onNewMessage(message);
    if (!result.has_more || result.messages.length === 0) break;
    since = result.messages[result.messages.length - 1].timestamp;
  }
}

// -- outgoing contact requests (the contacts list does not say who asked) -----------------

const outgoingKey = () => `umoc.outgoing.${myId()}`;
function loadOutgoing() {
  try {
    const ids = JSON.parse(localStorage.getItem(outgoingKey()) || '[]');
    return Array.isArray(ids) ? ids.filter(Number.isInteger) : [];
  } catch {
    return [];
  }
}
function saveOutgoing() {
  localStorage.setItem(outgoingKey(), JSON.stringify([...state.outgoing]));
}

// -- chats ------------------------------------------------------------------------------

function noteTimestamp(iso) {
  const t = Date.parse(iso || '');
  if (!Number.isNaN(t) && t > state.lastMessageAt) state.lastMessageAt = t;
}

async function loadChats() {
  const chats = await request('get_chats');
  state.chats = new Map(chats.map((c) => [keyOf(c.is_group, c.id), c]));
  for (const c of chats) if (c.last_message) noteTimestamp(c.last_message.timestamp);
  renderChats();
  renderConversationHeader();
}

let reloadChatsTimer = null;
function reloadChatsSoon() {
  clearTimeout(reloadChatsTimer);
  reloadChatsTimer = setTimeout(() => loadChats().catch(showError), 300);
}

/** What a message erased with its sender's account (type "erased", content "") shows. */
const ERASED = '(message erased)';

function lastMessageText(m) {
  if (!m) return '';
  const who = m.sender_id === myId() ? 'You: ' : '';
  if (m.type === 'text') return who + m.content;
  if (m.type === 'erased') return who + ERASED;
  const file = parseFile(m);
  const label = {image: 'Photo', video: 'Video', audio: 'Audio'}[m.type] || 'File';
  return `${who}${label}${file ? `: ${file.file_name}` : ''}`;
}

function sortedChats() {
  const time = (c) => Date.parse(c.last_message?.timestamp || '') || 0;
  return [...state.chats.entries()].sort(([, a], [, b]) => time(b) - time(a));
}

function renderChats() {
  refill($('chat-list'), sortedChats().map(([key, chat]) => renderChatItem(key, chat)));
  $('chat-list-empty').hidden = state.chats.size > 0;
}

function renderChatItem(key, chat) {
  const name = chat.is_group ? chat.name : nameOf(chat);
  const typers = typingNames(key);
  const online = !chat.is_group && chat.status === 'online';
  const unread = chat.unread_count || 0;
  const mentions = chat.mention_count || 0;
  const preview = typers ? `${typers} typing…` : lastMessageText(chat.last_message);
  const side = chat.is_group
    ? h('span', {class: 'chat-meta'}, `${chat.member_count} members`)
    : h('span', {class: `chat-meta presence ${online ? 'online' : 'offline'}`}, online ? 'online' : lastSeenText(chat.last_seen));
  return h('li', null, h('button', {
    type: 'button',
    class: `chat-item${key === state.current ? ' current' : ''}`,
    dataset: {key, focus: key},
    'aria-current': key === state.current ? 'true' : null,
    onclick: () => openChat(key),
  },
  chat.is_group ? avatar(chat, {group: true}) : avatar(chat, {online, userId: chat.id}),
  h('span', {class: 'chat-main'},
    h('span', {class: 'chat-name'}, name),
    h('span', {class: `chat-last${typers ? ' is-typing' : ''}`}, preview)),
  h('span', {class: 'chat-side'},
    side,
    h('span', {class: 'badges'},
      mentions > 0 ? h('span', {class: 'badge mention', title: `${mentions} unread mention${mentions === 1 ? '' : 's'} of you`},
        h('span', {'aria-hidden': 'true'}, '@'),
        h('span', {class: 'visually-hidden'}, `${mentions} mention${mentions === 1 ? '' : 's'} of you`)) : null,
      unread > 0 ? h('span', {class: 'badge', 'aria-label': `${unread} unread`}, String(unread)) : null))));
}

// -- contacts ---------------------------------------------------------------------------

async function loadContacts() {
  const {contacts} = await request('get_contacts');
  state.contacts = new Map(contacts.map((c) => [c.user_id, c]));
  for (const id of [...state.outgoing]) {
    if (state.contacts.get(id)?.status !== 'NEW') state.outgoing.delete(id);
  }
  saveOutgoing();
  renderContacts();
}

function isIncoming(contact) {
  if (typeof contact.requester_id === 'number') return contact.requester_id !== myId();
  return !state.outgoing.has(contact.user_id);
}

function renderContacts() {
  const order = {NEW: 0, FRIEND: 1, BLOCKED: 2};
  const contacts = [...state.contacts.values()].sort((a, b) =>
    (order[a.status] ?? 3) - (order[b.status] ?? 3) || a.username.localeCompare(b.username));
  refill($('contact-list'), contacts.map(renderContact));
  renderGroupMemberChoices();
}

function renderContact(c) {
  const buttons = [];
  let status;
  if (c.status === 'NEW' && isIncoming(c)) {
    status = 'wants to be your contact';
    buttons.push(
      h('button', {type: 'button', class: 'small', dataset: {focus: `accept${c.user_id}`},
        onclick: () => contactAction('accept_contact', c)}, 'Accept'),
      h('button', {type: 'button', class: 'small secondary', dataset: {focus: `reject${c.user_id}`},
        onclick: () => contactAction('reject_contact', c)}, 'Reject'));
  } else if (c.status === 'NEW') {
    status = 'request sent';
  } else if (c.status === 'FRIEND') {
    status = c.is_online ? 'online' : lastSeenText(c.last_seen);
    if (c.streak > 0) status += ` · streak ${c.streak}`;
    buttons.push(
      h('button', {type: 'button', class: 'small', dataset: {focus: `message${c.user_id}`},
        onclick: () => openChat(keyOf(false, c.user_id))}, 'Message'),
      h('button', {type: 'button', class: 'small secondary', dataset: {focus: `removecontact${c.user_id}`},
        'aria-label': `Remove ${nameOf(c)} from contacts`, onclick: () => removeContact(c)}, 'Remove'),
      h('button', {type: 'button', class: 'small danger', dataset: {focus: `block${c.user_id}`},
        onclick: () => blockContact(c)}, 'Block'));
  } else {
    status = 'blocked';
    buttons.push(
      h('button', {type: 'button', class: 'small secondary', dataset: {focus: `unblock${c.user_id}`},
        'aria-label': `Unblock ${nameOf(c)}`, onclick: () => contactAction('unblock_contact', c)}, 'Unblock'));
  }
  const label = `${nameOf(c)}: ${status}`;
  const shown = nameOf(c);
  return h('li', {class: 'contact', dataset: {user: String(c.user_id), status: c.status}},
    avatar(c, {size: 'small', online: c.is_online, userId: c.user_id}),
    h('span', {class: 'contact-main'},
      h('span', {class: 'contact-name'}, shown,
        shown !== c.username ? h('span', {class: 'display-username muted'}, ` @${c.username}`) : null),
      c.status_text ? h('span', {class: 'contact-bio muted'}, c.status_text) : null,
      h('span', {class: 'contact-status muted'}, status)),
    h('span', {class: 'contact-actions', role: 'group', 'aria-label': label}, buttons));
}

async function addContact(event) {
  event.preventDefault();
  const input = $('add-contact-username');
  const username = input.value.trim();
  if (!username) return;
  try {
    await request('add_contact', {contact_username: username});
    input.value = '';
    announce(`Contact request sent to ${username}`);
  } catch (err) {
    showError(err);
  }
}

async function contactAction(event, contact) {
  try {
    await request(event, {contact_id: contact.user_id});
  } catch (err) {
    showError(err);
  }
}

async function removeContact(contact) {
  if (!window.confirm(`Remove ${nameOf(contact)} from your contacts?`)) return;
  await contactAction('remove_contact', contact);
}

function onContactRemoved({user_id: userId}) {
  state.contacts.delete(userId);
  state.outgoing.delete(userId);
  saveOutgoing();
  const key = keyOf(false, userId);
  state.chats.delete(key);
  if (state.current === key) closeChat(false);
  renderContacts();
  renderChats();
  reloadChatsSoon();
}

// -- profiles -----------------------------------------------------------------------------

async function loadProfile() {
  if (!myId()) return;
  state.profile = await request('get_profile', {user_id: myId()});
  $('reports-button').hidden = !state.profile.is_admin; // server administrators only
  renderProfile();
}

function renderProfile() {
  const p = state.profile;
  const username = state.session.username;
  fill($('me'), avatar(p || {username}, {size: 'small'}),
    h('span', {class: 'me-name'}, p?.display_name ? `${p.display_name} (@${username})` : username));
  for (const [id, field] of [['profile-display-name', 'display_name'], ['profile-status-text', 'status_text']]) {
    const input = $(id);
    if (document.activeElement !== input) input.value = p?.[field] || '';
  }
  renderAvatarChoice();
}

/** The profile form's avatar: the image chosen and not saved yet, else the saved one. */
function renderAvatarChoice() {
  const choice = state.avatarChoice;
  const p = state.profile || {username: state.session?.username};
  const shown = choice ? {...p, avatar_url: null} : p; // a choice hides the saved image
  const preview = avatar(shown, {size: 'large'});
  if (choice?.url) {
    preview.append(h('img', {class: 'avatar-img', alt: '', src: choice.url}));
  }
  fill($('profile-avatar-preview'), preview);
  const saved = Boolean(avatarFileId(p.avatar_url));
  $('profile-avatar-remove').hidden = !(choice?.file || (saved && choice !== 'clear'));
  $('profile-avatar-status').textContent = choice?.file ? `${choice.file.name}: saved with the profile`
    : (choice === 'clear' ? 'Removed when you save the profile' : '');
}

function chooseAvatar(file) {
  if (!file) return;
  if (!/^image\/(png|jpeg|gif|webp)$/.test(file.type)) {
    showError('An avatar must be a PNG, JPEG, GIF or WebP image');
    $('profile-avatar-input').value = '';
    return;
  }
  if (state.avatarChoice?.url) URL.revokeObjectURL(state.avatarChoice.url);
  state.avatarChoice = {file, url: URL.createObjectURL(file)};
  renderAvatarChoice();
}

function removeAvatarChoice() {
  if (state.avatarChoice?.url) URL.revokeObjectURL(state.avatarChoice.url);
  $('profile-avatar-input').value = '';
  state.avatarChoice = avatarFileId(state.profile?.avatar_url) ? 'clear' : null;
  renderAvatarChoice();
  $('profile-avatar-input').focus();
}

/**
 * Upload an avatar image; answers its file id for update_profile.  `purpose: "avatar"`
 * ties the upload to no chat: it can only ever become the profile's picture.
 */
async function uploadAvatar(file, progress = $('profile-avatar-progress')) {
  progress.value = 0;
  progress.hidden = false;
  try {
    const ready = await request('upload_file_prepare', {
      purpose: 'avatar', file_name: file.name, file_size: file.size, file_type: file.type,
    });
    await uploadFile(ready.upload_url, ready.upload_token, file, file.type, (pct) => { progress.value = pct; });
    return ready.file_id;
  } finally {
    progress.hidden = true;
  }
}

async function saveProfile(event) {
  event.preventDefault();
  const button = $('profile-save');
  button.disabled = true;
  try {
    const payload = {
      display_name: $('profile-display-name').value.trim(),
      status_text: $('profile-status-text').value.trim(),
    };
    const choice = state.avatarChoice;
    if (choice?.file) {
      payload.avatar_file_id = await uploadAvatar(choice.file);
      state.avatarReady.set(payload.avatar_file_id, choice.url); // our copy: no download
      state.avatars.set(payload.avatar_file_id, Promise.resolve(choice.url));
    } else if (choice === 'clear') {
      payload.avatar_file_id = '';
    }
    state.profile = await request('update_profile', payload);
    state.avatarChoice = null;
    $('profile-avatar-input').value = '';
    renderProfile();
    announce('Profile saved');
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

// -- TOTP: set up (a key for the app), then confirm with a code; or turn off with a code ------------

let totpStep = null; // 'enable' after setup, 'disable' after "Turn off"

function showTotpCode(step, message) {
  totpStep = step;
  $('totp-code-row').hidden = false;
  $('totp-confirm').hidden = false;
  $('totp-status').textContent = message;
  $('totp-code').value = '';
  $('totp-code').focus();
}

async function setUpTotp() {
  try {
    const setup = await http.totp(state.session, 'setup');
    $('totp-secret').textContent = setup.secret;
    $('totp-uri').href = setup.otpauth_uri;
    $('totp-setup-info').hidden = false;
    showTotpCode('enable', 'Then type the code the app shows to turn it on.');
  } catch (err) {
    $('totp-status').textContent = err.message;
  }
}

async function confirmTotp(event) {
  event.preventDefault();
  if (!totpStep) return;
  try {
    const answer = await http.totp(state.session, totpStep, {code: $('totp-code').value.trim()});
    totpStep = null;
    $('totp-code-row').hidden = true;
    $('totp-confirm').hidden = true;
    $('totp-setup-info').hidden = true;
    $('totp-status').textContent = answer.enabled
      ? 'On: logins ask for a code from your app.' : 'Off: logins need your password only.';
  } catch (err) {
    $('totp-status').textContent = err.message;
  }
}

function onProfileUpdated(p) {
  if (p.user_id === myId()) {
    state.profile = p;
    renderProfile();
  } else {
    state.people.set(p.user_id, p);
    const fields = {display_name: p.display_name, avatar_url: p.avatar_url};
    const contact = state.contacts.get(p.user_id);
    if (contact) Object.assign(contact, fields, {status_text: p.status_text});
    const chat = state.chats.get(keyOf(false, p.user_id));
    if (chat) Object.assign(chat, fields);
  }
  for (const info of state.groups.values()) {
    for (const m of info.members) {
      if (m.user_id === p.user_id) Object.assign(m, {display_name: p.display_name, avatar_url: p.avatar_url});
    }
  }
  renderContacts();
  renderChats();
  renderConversationHeader();
  renderGroupPanel();
  // Their messages on screen: the name and avatar beside each.
  const c = state.current && state.convs.get(state.current);
  for (const m of c?.list || []) if (m.sender_id === p.user_id) rerenderMessage(state.current, m);
}

async function blockContact(contact) {
  if (!window.confirm(`Block ${contact.username}? Neither of you can then message the other.`)) return;
  await contactAction('block_contact', contact);
}

// -- conversation -------------------------------------------------------------------------

function conv(key) {
  let c = state.convs.get(key);
  if (!c) {
    c = {list: [], byId: new Map(), page: 0, totalPages: 0, loaded: false};
    state.convs.set(key, c);
  }
  return c;
}

function openFromHash() {
  const key = decodeURIComponent(location.hash.slice(1));
  if (/^[dg]\d+$/.test(key) && (state.chats.has(key) || key[0] === 'd')) openChat(key, false);
}

async function openChat(key, focusComposer = true) {
  state.current = key;
  if (location.hash !== `#${key}`) history.replaceState(null, '', `#${key}`);
  $('app-view').classList.add('chat-open');
  $('no-chat').hidden = true;
  $('chat-pane').hidden = false;
  showGroupPanel(false);
  closeThread();
  fill($('typing'));
  stopComposing(false);
  closeMentions();
  $('composer-input').value = '';
  renderChats();
  renderConversationHeader();
  renderMessages();
  if (focusComposer) $('composer-input').focus();
  const c = conv(key);
  try {
    if (!c.loaded) await loadPage(key, 1);
    await loadChatInfo(key);
  } catch (err) {
    showError(err);
  }
}

function closeChat(focusList = true) {
  const key = state.current;
  state.current = null;
  history.replaceState(null, '', location.pathname);
  $('app-view').classList.remove('chat-open');
  $('no-chat').hidden = false;
  $('chat-pane').hidden = true;
  renderChats();
  if (focusList && key) $('chat-list').querySelector(`[data-key="${key}"]`)?.focus();
}

async function loadChatInfo(key) {
  const {isGroup, id} = parseKey(key);
  const info = await request('get_chat_info', {chat_id: id, is_group: isGroup});
  if (isGroup) {
    // chat_info does not say whether we are muted: member_muted told us.
    const muted = state.groups.get(id)?.muted_until;
    if (muted) info.muted_until = muted;
    state.groups.set(id, info);
    state.memberCursors.delete(id); // its first members again; get_members pages from the start
  } else {
    conv(key).info = info;
  }
  if (key === state.current) {
    renderConversationHeader();
    renderGroupPanel();
  }
}

async function loadPage(key, page) {
  const {isGroup, id} = parseKey(key);
  const result = await request('get_chat_history', {chat_id: id, is_group: isGroup, page, page_size: PAGE_SIZE});
  const c = conv(key);
  const fresh = result.messages.filter((m) => !c.byId.has(m.message_id));
  for (const m of result.messages) {
    noteTimestamp(m.timestamp);
    const known = c.byId.get(m.message_id);
    if (known) {
      Object.assign(known, {
        is_read: m.is_read, content: m.content, edited_at: m.edited_at, reactions: m.reactions,
        reply_to: m.reply_to, delivered_at: known.delivered_at || m.delivered_at,
      });
    }
  }
  for (const m of fresh) c.byId.set(m.message_id, m);
  if (page === 1 && c.loaded) {
    c.list.push(...fresh);
    c.list.sort((a, b) => Date.parse(a.timestamp) - Date.parse(b.timestamp));
  } else {
    c.list.unshift(...fresh);
  }
  c.page = Math.max(c.page, page);
  c.totalPages = result.total_pages;
  c.loaded = true;
  if (key === state.current) {
    if (page === 1) renderMessages();
    else prependMessages(fresh);
  }
  return result;
}

/** After a reconnect: page 1 again, for read states and deletions we missed. */
async function refreshConversation(key) {
  const c = conv(key);
  if (!c.loaded) return;
  const result = await loadPage(key, 1);
  const onPage = new Set(result.messages.map((m) => m.message_id));
  const oldest = result.messages.length ? Date.parse(result.messages[0].timestamp) : Infinity;
  for (const m of [...c.list]) {
    if (!onPage.has(m.message_id) && Date.parse(m.timestamp) > oldest) removeMessage(key, m.message_id);
  }
  if (key === state.current) renderMessages();
}

async function loadOlder() {
  const key = state.current;
  const c = conv(key);
  const button = $('load-older');
  button.disabled = true;
  try {
    await loadPage(key, c.page + 1);
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
    updateLoadOlder();
  }
}

function updateLoadOlder() {
  const c = state.current && state.convs.get(state.current);
  $('load-older').hidden = !c || c.page >= c.totalPages;
}

function renderConversationHeader() {
  const key = state.current;
  if (!key) return;
  const {isGroup, id} = parseKey(key);
  $('conversation-title').textContent = chatName(key);
  const chat = state.chats.get(key);
  fill($('conversation-avatar'), isGroup
    ? avatar({name: chatName(key), avatar_url: state.groups.get(id)?.avatar_url}, {group: true})
    : avatar(profileOf(id, chat || {username: chatName(key)}), {userId: id}));
  let subtitle;
  const typers = typingNames(key);
  if (isGroup) {
    const info = state.groups.get(id);
    const count = info?.member_count ?? state.chats.get(key)?.member_count;
    subtitle = count ? `${count} members` : '';
    if (info) {
      const online = info.members.filter((m) => m.is_online && m.user_id !== myId()).length;
      if (online) subtitle += `, ${online} online`;
    }
  } else {
    const contact = state.contacts.get(id);
    const online = chat ? chat.status === 'online' : contact?.is_online;
    subtitle = online ? 'online' : lastSeenText(chat?.last_seen ?? contact?.last_seen);
    const streak = conv(key).info?.streak ?? contact?.streak;
    if (streak > 0) subtitle += ` · streak ${streak} day${streak === 1 ? '' : 's'}`;
  }
  $('conversation-subtitle').textContent = subtitle;
  $('typing').textContent = typers ? `${typers} ${typers.includes(' and ') ? 'are' : 'is'} typing…` : '';
  $('group-button').hidden = !isGroup;
  renderComposerRule();
}

// -- messages ---------------------------------------------------------------------------

/**
 * What a message offers (docs/api.md, "Messages").  run(m, button) is called on a click;
 * `id` names the button (data-action, and data-focus so a re-render keeps the focus).
 */
const MESSAGE_ACTIONS = [
  {
    id: 'reply',
    label: 'Reply',
    available: () => true,
    async run(m) { startComposing('reply', m); },
  },
  {
    id: 'thread',
    label: 'Reply in thread',
    // Threads are one level deep: a reply's own replies go to its root (docs/api.md, "Threads").
    available: (m) => !m.thread_id,
    async run(m) { await openThread(m); },
  },
  {
    id: 'react',
    label: 'React',
    expands: true,
    available: () => true,
    async run(m, button) {
      const picker = messageNode(m.message_id)?.querySelector('.reaction-picker');
      if (!picker) return;
      picker.hidden = !picker.hidden;
      button.setAttribute('aria-expanded', String(!picker.hidden));
      if (!picker.hidden) picker.querySelector('button')?.focus();
    },
  },
  {
    id: 'edit',
    label: 'Edit',
    available: (m) => m.sender_id === myId() && m.type === 'text',
    async run(m) { startComposing('edit', m); },
  },
  {
    id: 'report',
    label: 'Report',
    available: (m) => m.sender_id !== myId() && m.type !== 'erased',
    async run(m) { openReport(m); },
  },
  {
    id: 'delete',
    label: 'Delete',
    className: 'danger',
    available: (m) => m.sender_id === myId(),
    async run(m) {
      if (!window.confirm('Delete this message for everyone?')) return;
      await request('delete_message', {message_id: m.message_id});
    },
  },
];

function preview(text, max = 100) {
  const t = String(text ?? '');
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

function quoteText(q) {
  if (!q || q.deleted) return 'Deleted message';
  if (q.type && q.type !== 'text') return lastMessageText({...q, sender_id: null});
  return preview(q.content);
}

function renderReplyQuote(q) {
  if (!q) return null;
  const who = q.deleted ? '' : (q.sender_id === myId() ? 'You' : (state.contacts.get(q.sender_id)?.display_name || q.sender_username || ''));
  return h('blockquote', {class: 'reply-quote', dataset: {replyTo: q.message_id}},
    h('span', {class: 'visually-hidden'}, 'In reply to '),
    who ? h('span', {class: 'reply-sender'}, who) : null,
    h('span', {class: 'reply-text'}, quoteText(q)));
}

function toggleReaction(m, emoji) {
  const mine = (m.reactions || []).some((r) => r.emoji === emoji && (r.user_ids || []).includes(myId()));
  return request(mine ? 'remove_reaction' : 'add_reaction', {message_id: m.message_id, emoji})
    .then((r) => applyReactions(r)).catch(showError);
}

function renderReactions(m) {
  const list = (m.reactions || []).filter((r) => r.count > 0);
  const chips = list.map((r) => {
    const mine = (r.user_ids || []).includes(myId());
    const name = REACTION_NAMES[r.emoji] || r.emoji;
    return h('button', {
      type: 'button', class: 'reaction', 'aria-pressed': String(mine),
      dataset: {emoji: r.emoji, focus: `chip${m.message_id}${r.emoji}`},
      'aria-label': `${name}: ${r.count}${mine ? ', including you. Remove your reaction' : '. Add yours'}`,
      onclick: () => toggleReaction(m, r.emoji),
    }, h('span', {'aria-hidden': 'true'}, r.emoji), ' ', h('span', {class: 'reaction-count'}, String(r.count)));
  });
  const picker = h('div', {class: 'reaction-picker', role: 'group', 'aria-label': 'Choose a reaction', hidden: true},
    REACTION_EMOJI.map((e) => h('button', {
      type: 'button', dataset: {emoji: e, focus: `pick${m.message_id}${e}`}, 'aria-label': `React with ${REACTION_NAMES[e]}`,
      onclick: () => toggleReaction(m, e),
    }, e)));
  picker.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    e.stopPropagation();
    picker.hidden = true;
    const button = messageNode(m.message_id)?.querySelector('[data-action="react"]');
    button?.setAttribute('aria-expanded', 'false');
    button?.focus();
  });
  return [chips.length ? h('div', {class: 'reactions', role: 'group', 'aria-label': 'Reactions'}, chips) : null, picker];
}

function parseFile(m) {
  if (m.type === 'text') return null;
  try {
    const file = JSON.parse(m.content);
    return file && typeof file === 'object' && isFileId(file.file_id) ? file : null;
  } catch {
    return null;
  }
}

function renderFile(m, file) {
  // No session in the address: the click fetches the file with the session in headers and
  // saves the blob: URL (issue 22, G14).  The href is the bare path, which answers 401 alone.
  const link = h('a', {href: `/api/files/${file.file_id}`, download: file.file_name, class: 'file-link',
    dataset: {file: file.file_id}}, h('span', {'aria-hidden': 'true'}, '⬇ '), file.file_name);
  link.addEventListener('click', (e) => {
    e.preventDefault();
    saveFile(file).catch(showError);
  });
  const details = h('span', {class: 'muted'}, ` ${sizeText(file.file_size)}`);
  if (m.type !== 'image') return h('div', {class: 'file'}, link, details);
  const img = h('img', {class: 'preview', alt: file.file_name, dataset: {file: file.file_id}});
  const thumbnail = typeof file.thumbnail_url === 'string';
  if (thumbnail && Number.isInteger(file.width) && Number.isInteger(file.height)) {
    // The server's 320 px thumbnail (issue 32): its box is known before it arrives, so nothing jumps.
    const scale = Math.min(1, 320 / Math.max(file.width, file.height, 1));
    img.width = Math.max(1, Math.round(file.width * scale));
    img.height = Math.max(1, Math.round(file.height * scale));
  }
  img.addEventListener('load', () => keepAtBottomIfNear());
  loadPreview(img, file.file_id, thumbnail);
  return h('figure', {class: 'file image'}, img, h('figcaption', null, link, details));
}

/** Download a file through a blob: URL (the session goes in headers, not in the link). */
async function saveFile(file) {
  let url = state.fileUrls.get(file.file_id); // an image already previewed is not fetched again
  const kept = Boolean(url);
  if (!url) url = await fetchFileUrl(file.file_id, state.session);
  const a = h('a', {href: url, download: file.file_name, hidden: true});
  document.body.append(a);
  a.click();
  a.remove();
  if (!kept) setTimeout(() => URL.revokeObjectURL(url), 60000); // the download has started by then
}

async function loadPreview(img, fileId, thumbnail = false) {
  // A thumbnail is kept under its own key: saving the file must download the file itself.
  const key = thumbnail ? `${fileId}#thumbnail` : fileId;
  try {
    let url = state.fileUrls.get(key) || state.fileUrls.get(fileId); // the whole image will do too
    if (!url) {
      url = await fetchFileUrl(fileId, state.session, thumbnail);
      state.fileUrls.set(key, url);
    }
    img.src = url;
  } catch {
    img.alt = `${img.alt} (preview unavailable)`;
    img.classList.add('broken');
  }
}

function receiptOf(m) {
  const read = Boolean(m.is_read);
  const delivered = !read && Boolean(m.delivered_at);
  const word = read ? 'Read' : (delivered ? 'Delivered' : 'Sent');
  return h('span', {class: `receipt${read ? ' read' : ''}${delivered ? ' delivered' : ''}`, title: word},
    h('span', {'aria-hidden': 'true'}, read || delivered ? '✓✓' : '✓'),
    h('span', {class: 'visually-hidden'}, word));
}

/** Does this message (from someone else) mention me? */
const mentionsMe = (m) => m.sender_id !== myId() && Array.isArray(m.mentions) && m.mentions.includes(myId());

/** A username for a user id, from whatever we know of them. */
function usernameOf(userId) {
  if (userId === myId()) return state.session.username;
  return profileOf(userId)?.username || state.chats.get(keyOf(false, userId))?.username || null;
}

/** A text message's words, "@name" of the users it mentions marked (as text nodes, never HTML). */
function renderText(m) {
  const mentioned = new Set((m.mentions || []).map(usernameOf).filter(Boolean).map((u) => u.toLowerCase()));
  if (!mentioned.size) return m.content;
  const parts = [];
  let last = 0;
  for (const match of m.content.matchAll(USERNAME_AT)) {
    const name = match[2].replace(/\.+$/, '');
    if (!mentioned.has(name.toLowerCase())) continue;
    const at = match.index + match[1].length;
    parts.push(m.content.slice(last, at), h('span', {class: 'mention'}, `@${name}`));
    last = at + 1 + name.length;
  }
  parts.push(m.content.slice(last));
  return parts;
}

function renderMessage(m, isGroup) {
  const mine = m.sender_id === myId();
  const file = parseFile(m);
  const body = file ? renderFile(m, file)
    : h('div', {class: 'text'}, m.type === 'text' ? renderText(m)
      : m.type === 'erased' ? ERASED : '(unreadable attachment)');
  const forMe = mentionsMe(m);
  const actions = MESSAGE_ACTIONS.filter((a) => a.available(m)).map((a) => h('button', {
    type: 'button',
    class: `small link ${a.className || ''}`,
    dataset: {action: a.id, focus: `${a.id}${m.message_id}`},
    'aria-expanded': a.expands ? 'false' : null,
    onclick: (e) => a.run(m, e.currentTarget).catch(showError),
  }, a.label));
  const sender = mine ? null
    : profileOf(m.sender_id, {username: m.sender_username, display_name: m.display_name, avatar_url: m.avatar_url});
  return h('li', {class: `message${mine ? ' mine' : ''}${forMe ? ' mentions-me' : ''}`, dataset: {id: m.message_id}},
    mine ? null : avatar(sender, {size: 'small', userId: m.sender_id}),
    h('div', {class: 'bubble', tabindex: '-1'},
      isGroup && !mine ? h('span', {class: 'sender'}, senderName(m)) : null,
      mine ? h('span', {class: 'visually-hidden'}, 'You: ') : (isGroup ? null : h('span', {class: 'visually-hidden'}, `${senderName(m)}: `)),
      forMe ? h('span', {class: 'visually-hidden'}, 'Mentions you. ') : null,
      renderReplyQuote(m.reply_to),
      body,
      m.type === 'text' ? renderLinkCard(m.preview) : null,
      renderReactions(m),
      renderThreadSummary(m),
      h('div', {class: 'meta'},
        m.edited_at ? h('span', {class: 'edited', title: `Edited ${dayOf(m.edited_at)} ${timeOf(m.edited_at)}`}, 'edited') : null,
        h('time', {datetime: m.timestamp, title: `${dayOf(m.timestamp)} ${timeOf(m.timestamp)}`}, timeOf(m.timestamp)),
        mine ? receiptOf(m) : null,
        actions.length ? h('span', {class: 'actions'}, actions) : null)));
}

/**
 * A text message's link card (issue 32): the page's title, description and site name as the
 * server fetched them, and the server's copy of its image (the page's site is never contacted
 * for it).  The link opens in a new tab with no referrer.
 */
function renderLinkCard(p) {
  if (!p || typeof p.url !== 'string' || !/^https?:\/\//i.test(p.url)) return null;
  const img = typeof p.image_url === 'string' ? h('img', {class: 'link-card-image', alt: ''}) : null;
  if (img && state.fileUrls.has(p.image_url)) {
    img.src = state.fileUrls.get(p.image_url);
  } else if (img) {
    fetchPreviewImageUrl(p.image_url, state.session).then((url) => {
      state.fileUrls.set(p.image_url, url); // revoked with the others at logout
      img.src = url;
    }).catch(() => img.remove());
  }
  return h('a', {class: 'link-card', href: p.url, target: '_blank', rel: 'noopener noreferrer nofollow'},
    img,
    h('span', {class: 'link-card-text'},
      p.site_name ? h('span', {class: 'link-card-site muted'}, p.site_name) : null,
      p.title ? h('strong', {class: 'link-card-title'}, p.title) : null,
      p.description ? h('span', {class: 'link-card-description'}, p.description) : null));
}

function onMessagePreview(e) {
  forEachMessage(e.message_id, (key, m) => {
    m.preview = e.preview;
    rerenderMessage(key, m);
  });
}

/** Draw one message again where it is, keeping the keyboard focus inside it. */
function rerenderMessage(key, m) {
  if (key !== state.current) return;
  const node = messageNode(m.message_id);
  if (!node) return;
  const focused = node.contains(document.activeElement) ? document.activeElement.dataset.focus : undefined;
  const pickerOpen = node.querySelector('.reaction-picker') && !node.querySelector('.reaction-picker').hidden;
  const fresh = renderMessage(m, parseKey(key).isGroup);
  if (pickerOpen) {
    fresh.querySelector('.reaction-picker').hidden = false;
    fresh.querySelector('[data-action="react"]')?.setAttribute('aria-expanded', 'true');
  }
  node.replaceWith(fresh);
  if (focused) fresh.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
  watchUnread(m);
}

function forEachMessage(id, fn) {
  for (const [key, c] of state.convs) {
    const m = c.byId.get(id);
    if (m) fn(key, m);
  }
}

function applyReactions(r) {
  if (!r || !r.message_id) return;
  forEachMessage(r.message_id, (key, m) => {
    m.reactions = r.reactions;
    rerenderMessage(key, m);
  });
}

function onReactionUpdated(r) {
  applyReactions(r);
  if (r.user_id !== myId() && r.action === 'added') {
    const who = state.contacts.get(r.user_id);
    announce(`${nameOf(who) || 'Someone'} reacted ${REACTION_NAMES[r.emoji] || r.emoji}`);
  }
}

function onMessageEdited(e) {
  forEachMessage(e.message_id, (key, m) => {
    Object.assign(m, {content: e.content, edited_at: e.edited_at});
    rerenderMessage(key, m);
  });
  for (const [key, c] of state.convs) {
    for (const m of c.list) {
      if (m.reply_to?.message_id === e.message_id && !m.reply_to.deleted) {
        m.reply_to = {...m.reply_to, content: preview(e.content)};
        rerenderMessage(key, m);
      }
    }
  }
  for (const chat of state.chats.values()) {
    if (chat.last_message?.message_id === e.message_id) chat.last_message = {...chat.last_message, content: e.content};
  }
  renderChats();
}

// -- composing: editing or replying ----------------------------------------------------

function startComposing(mode, m) {
  state.composing = {mode, message: m, key: state.current};
  const input = $('composer-input');
  const what = m.type === 'text' ? preview(m.content, 60) : lastMessageText({...m, sender_id: null});
  $('composer-context-text').textContent = mode === 'edit'
    ? `Editing: ${what}`
    : `Replying to ${m.sender_id === myId() ? 'yourself' : senderName(m)}: ${what}`;
  $('composer-context').hidden = false;
  $('send-button').textContent = mode === 'edit' ? 'Save' : 'Send';
  if (mode === 'edit') input.value = m.content;
  input.focus();
  onComposerInput();
}

function stopComposing(clear) {
  const was = state.composing;
  state.composing = null;
  $('composer-context').hidden = true;
  $('send-button').textContent = 'Send';
  if (clear && was?.mode === 'edit') $('composer-input').value = '';
}

function messagesNearBottom() {
  const box = $('messages');
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

function scrollToBottom() {
  const box = $('messages');
  box.scrollTop = box.scrollHeight;
}

let stickToBottom = true;
function keepAtBottomIfNear() {
  if (stickToBottom) scrollToBottom();
}

function renderMessages() {
  const key = state.current;
  const list = $('message-list');
  readObserver.disconnect();
  if (!key) return fill(list);
  const c = conv(key);
  const {isGroup} = parseKey(key);
  fill(list, c.list.map((m) => renderMessage(m, isGroup)));
  if (c.loaded && c.list.length === 0) list.append(h('li', {class: 'empty muted'}, 'No messages yet. Say hello!'));
  for (const m of c.list) watchUnread(m);
  updateLoadOlder();
  stickToBottom = true;
  scrollToBottom();
}

function prependMessages(messages) {
  const box = $('messages');
  const list = $('message-list');
  const {isGroup} = parseKey(state.current);
  const before = box.scrollHeight;
  list.querySelector('.empty')?.remove();
  list.prepend(...messages.map((m) => renderMessage(m, isGroup)));
  box.scrollTop += box.scrollHeight - before;
  for (const m of messages) watchUnread(m);
}

function appendMessage(m) {
  const list = $('message-list');
  const near = messagesNearBottom();
  list.querySelector('.empty')?.remove();
  list.append(renderMessage(m, parseKey(state.current).isGroup));
  if (near || m.sender_id === myId()) {
    stickToBottom = true;
    scrollToBottom();
  }
  watchUnread(m);
}

function messageNode(id) {
  return $('message-list').querySelector(`[data-id="${CSS.escape(id)}"]`);
}

// -- delivery receipts: tell senders their messages reached this client ----------------

const pendingDeliveries = new Set();
let deliveryTimer = null;

function noteDelivered(m) {
  if (m.sender_id === myId() || m.is_read) return;
  pendingDeliveries.add(m.message_id);
  if (!deliveryTimer) deliveryTimer = setTimeout(flushDeliveries, 200);
}

async function flushDeliveries() {
  deliveryTimer = null;
  const ids = [...pendingDeliveries].slice(0, 100);
  for (const id of ids) pendingDeliveries.delete(id);
  if (pendingDeliveries.size) deliveryTimer = setTimeout(flushDeliveries, 200);
  if (!ids.length || !state.conn) return;
  try {
    await request('message_delivered', {message_ids: ids});
  } catch (err) {
    console.debug('message_delivered', err); // e.g. deleted meanwhile: nothing to show
  }
}

function onMessagesDelivered({message_ids: ids, delivered_at: when}) {
  for (const id of ids || []) {
    forEachMessage(id, (key, m) => {
      if (m.sender_id !== myId() || m.delivered_at) return;
      m.delivered_at = when;
      if (key === state.current && !m.is_read) messageNode(id)?.querySelector('.receipt')?.replaceWith(receiptOf(m));
    });
  }
}

// -- threads (docs/api.md, "Threads") ----------------------------------------------------

/** "3 replies" under a root: opens its thread. */
function renderThreadSummary(m) {
  const n = m.thread?.reply_count || 0;
  if (!n) return null;
  return h('button', {
    type: 'button', class: 'small link thread-summary', dataset: {action: 'open-thread', focus: `open${m.message_id}`},
    onclick: () => openThread(m).catch(showError),
  }, `${n} ${n === 1 ? 'reply' : 'replies'}`);
}

function renderThreadPanel() {
  const t = state.thread;
  $('thread-panel').hidden = !t;
  if (!t) {
    fill($('thread-list'));
    return;
  }
  const isGroup = parseKey(t.key).isGroup;
  const root = renderMessage(t.root, isGroup);
  root.classList.add('root');
  refill($('thread-list'), root, ...t.replies.map((m) => renderMessage(m, isGroup)));
}

async function openThread(m) {
  const key = state.current;
  const page = await request('get_thread', {thread_id: m.message_id});
  state.thread = {key, id: page.thread_id, root: page.root, replies: page.messages};
  renderThreadPanel();
  $('thread-input').focus();
}

function closeThread() {
  state.thread = null;
  renderThreadPanel();
}

async function sendThreadReply(event) {
  event.preventDefault();
  const t = state.thread;
  const text = $('thread-input').value.trim();
  if (!t || !text) return;
  const {isGroup, id} = parseKey(t.key);
  const message = await request('send_message', {
    recipient_id: id, is_group: isGroup, content: text, thread_id: t.id, also_in_chat: $('thread-also').checked,
  });
  $('thread-input').value = '';
  $('thread-also').checked = false;
  onNewMessage(message);
}

/** A reply: into the open thread; into the main timeline only when also_in_chat. */
function onThreadReply(m) {
  const t = state.thread;
  if (t && t.id === m.thread_id && !t.replies.some((r) => r.message_id === m.message_id)) {
    t.replies.push(m);
    renderThreadPanel();
  }
}

function onThreadUpdated(u) {
  const summary = {reply_count: u.reply_count, last_reply_at: u.last_reply_at, participant_ids: u.participant_ids};
  forEachMessage(u.thread_id, (key, m) => {
    m.thread = summary;
    rerenderMessage(key, m);
  });
  if (state.thread && state.thread.id === u.thread_id) {
    state.thread.root.thread = summary;
    renderThreadPanel();
  }
}

function onNewMessage(m) {
  if (m.thread_id) {
    onThreadReply(m);
    if (!m.also_in_chat) {
      noteTimestamp(m.timestamp);
      return; // its thread's count comes with thread_updated; followers' unread with get_chats
    }
  }
  const key = chatKeyOfMessage(m);
  noteTimestamp(m.timestamp);
  noteDelivered(m);
  clearTyping(key, m.sender_id);
  const c = state.convs.get(key);
  const fresh = !c || !c.byId.has(m.message_id);
  if (c && c.loaded && fresh) {
    const message = {...m, is_read: false};
    c.byId.set(m.message_id, message);
    c.list.push(message);
    if (key === state.current) appendMessage(message);
  }
  const chat = state.chats.get(key);
  if (!chat) {
    reloadChatsSoon(); // a chat we did not list yet
    return;
  }
  if (fresh) {
    chat.last_message = m;
    if (m.sender_id !== myId()) {
      chat.unread_count = (chat.unread_count || 0) + 1;
      if (mentionsMe(m)) {
        chat.mention_count = (chat.mention_count || 0) + 1;
        if (key !== state.current) announce(`${senderName(m)} mentioned you in ${chatName(key)}`);
      } else if (key !== state.current) {
        announce(`New message from ${senderName(m)}`);
      }
    }
  }
  renderChats();
}

function removeMessage(key, id) {
  const c = state.convs.get(key);
  if (!c || !c.byId.has(id)) return false;
  c.byId.delete(id);
  c.list = c.list.filter((m) => m.message_id !== id);
  if (key === state.current) messageNode(id)?.remove();
  return true;
}

function onMessageDeleted({message_id: id}) {
  for (const key of state.convs.keys()) removeMessage(key, id);
  if (state.composing?.message.message_id === id) stopComposing(true);
  for (const [key, c] of state.convs) {
    for (const m of c.list) {
      if (m.reply_to?.message_id === id) {
        m.reply_to = {message_id: id, deleted: true};
        rerenderMessage(key, m);
      }
    }
  }
  reloadChatsSoon(); // last message and unread counts may have changed
}

// -- read receipts: mark incoming messages read once they are on screen -----------------

const pendingReads = new Map(); // message_id -> {key, sender_id}
const visibleUnread = new Set();
let readTimer = null;

const readObserver = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const id = entry.target.dataset.id;
    if (entry.isIntersecting) visibleUnread.add(id);
    else visibleUnread.delete(id);
  }
  queueReads();
}, {root: null, threshold: 0.5});

function watchUnread(m) {
  if (m.sender_id === myId() || m.is_read) return;
  const node = messageNode(m.message_id);
  if (node) readObserver.observe(node);
}

function queueReads() {
  if (document.visibilityState !== 'visible' || !state.current) return;
  const c = state.convs.get(state.current);
  if (!c) return;
  for (const id of visibleUnread) {
    const m = c.byId.get(id);
    if (m && !m.is_read && !pendingReads.has(id)) pendingReads.set(id, {key: state.current, sender_id: m.sender_id});
  }
  if (pendingReads.size && !readTimer) readTimer = setTimeout(flushReads, 250);
}

async function flushReads() {
  readTimer = null;
  const bySender = new Map();
  for (const [id, {key, sender_id: sender}] of pendingReads) {
    if (!bySender.has(sender)) bySender.set(sender, {key, ids: []});
    bySender.get(sender).ids.push(id);
  }
  pendingReads.clear();
  for (const [sender, {key, ids}] of bySender) {
    try {
      const receipt = await request('read_receipt', {sender_id: sender, message_ids: ids});
      const c = state.convs.get(key);
      for (const id of receipt.message_ids || ids) {
        const m = c?.byId.get(id);
        if (m) m.is_read = true;
        visibleUnread.delete(id);
        const node = messageNode(id);
        if (node) readObserver.unobserve(node);
      }
      // The badge itself comes with chat_read, to this tab and the user's every other device.
      renderChats();
    } catch (err) {
      showError(err);
    }
  }
}

function onMessagesRead({message_ids: ids}) {
  for (const c of state.convs.values()) {
    for (const id of ids || []) {
      const m = c.byId.get(id);
      if (!m || m.sender_id !== myId() || m.is_read) continue;
      m.is_read = true;
      messageNode(id)?.querySelector('.receipt')?.replaceWith(receiptOf(m));
    }
  }
}

// -- mentions: "@" in the composer offers the chat's members --------------------------

const MENTION_TYPED = /(^|[^A-Za-z0-9_.-])@([A-Za-z0-9_.-]{0,32})$/; // "@ali" just before the caret
let mention = null; // {key, start, options: [member], active} while the list is open

/** Who can be mentioned in a chat: the other user of a direct chat, a group's other members. */
function chatMembers(key) {
  const {isGroup, id} = parseKey(key);
  if (isGroup) {
    return (state.groups.get(id)?.members || []).filter((m) => m.user_id !== myId())
      .map((m) => ({...profileOf(m.user_id, m), user_id: m.user_id, username: m.username}));
  }
  const peer = profileOf(id, state.chats.get(key));
  return peer?.username ? [{...peer, user_id: id}] : [];
}

/** The user ids an outgoing text mentions: each "@username" of a member (send_message's `mentions`). */
function mentionIdsIn(text, key) {
  const members = new Map(chatMembers(key).map((m) => [m.username.toLowerCase(), m.user_id]));
  const ids = new Set();
  for (const match of text.matchAll(USERNAME_AT)) {
    const id = members.get(match[2].replace(/\.+$/, '').toLowerCase());
    if (id !== undefined) ids.add(id);
  }
  return [...ids].slice(0, MAX_MENTIONS);
}

function updateMentions() {
  const input = $('composer-input');
  const typed = state.current && input.selectionStart === input.selectionEnd
    ? MENTION_TYPED.exec(input.value.slice(0, input.selectionStart)) : null;
  if (!typed) {
    closeMentions();
    return;
  }
  const query = typed[2].toLowerCase();
  const options = chatMembers(state.current).filter((m) => m.username.toLowerCase().startsWith(query)
    || (m.display_name || '').toLowerCase().startsWith(query)).slice(0, MENTION_CHOICES);
  if (!options.length) {
    closeMentions();
    return;
  }
  const before = mention;
  mention = {key: state.current, start: input.selectionStart - typed[2].length - 1, options, active: 0};
  renderMentions();
  if (!before) announce(`${options.length} member${options.length === 1 ? '' : 's'} to mention: arrow keys to choose, Enter to pick`);
}

function renderMentions() {
  const list = $('mention-list');
  const input = $('composer-input');
  fill(list, mention.options.map((m, i) => h('li', {
    id: `mention-option-${i}`,
    role: 'option',
    class: `mention-option${i === mention.active ? ' active' : ''}`,
    'aria-selected': String(i === mention.active),
    dataset: {user: String(m.user_id)},
    onmousedown: (e) => e.preventDefault(), // keep the focus in the composer
    onclick: () => pickMention(i),
  }, avatar(m, {size: 'small'}), h('span', {class: 'mention-name'}, nameOf(m)),
  h('span', {class: 'muted'}, ` @${m.username}`))));
  list.hidden = false;
  input.setAttribute('aria-activedescendant', `mention-option-${mention.active}`);
}

function closeMentions() {
  mention = null;
  const list = $('mention-list');
  if (!list) return;
  list.hidden = true;
  fill(list);
  $('composer-input').removeAttribute('aria-activedescendant');
}

function pickMention(index) {
  const input = $('composer-input');
  const member = mention?.options[index];
  if (!member) return;
  const text = `@${member.username} `;
  input.value = input.value.slice(0, mention.start) + text + input.value.slice(input.selectionStart);
  const caret = mention.start + text.length;
  input.setSelectionRange(caret, caret);
  closeMentions();
  input.focus();
  announce(`${nameOf(member)} will be mentioned`);
}

/** Keys while the member list is open; true when the key was used. */
function mentionKey(e) {
  if (!mention) return false;
  const count = mention.options.length;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    mention.active = (mention.active + (e.key === 'ArrowDown' ? 1 : count - 1)) % count;
    renderMentions();
  } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
    pickMention(mention.active);
  } else if (e.key === 'Escape') {
    closeMentions();
  } else {
    return false;
  }
  e.preventDefault();
  e.stopPropagation();
  return true;
}

// -- sending ----------------------------------------------------------------------------

async function sendText(event) {
  event.preventDefault();
  const input = $('composer-input');
  const content = input.value.trim();
  if (!content || !state.current) return;
  const {isGroup, id} = parseKey(state.current);
  const composing = state.composing?.key === state.current ? state.composing : null;
  stopTyping();
  closeMentions();
  input.value = '';
  input.rows = 1;
  try {
    if (composing?.mode === 'edit') {
      stopComposing(false);
      if (content !== composing.message.content) {
        onMessageEdited(await request('edit_message', {message_id: composing.message.message_id, content}));
      }
      return;
    }
    const payload = {recipient_id: id, is_group: isGroup, content, type: 'text'};
    if (composing?.mode === 'reply') payload.reply_to = composing.message.message_id;
    const mentions = mentionIdsIn(content, state.current);
    if (mentions.length) payload.mentions = mentions;
    stopComposing(false);
    const message = await request('send_message', payload);
    onNewMessage(message);
  } catch (err) {
    input.value = content;
    if (composing) startComposing(composing.mode, composing.message);
    showError(err);
  }
}

async function sendFile(file) {
  if (!file || !state.current) return;
  const key = state.current;
  const {isGroup, id} = parseKey(key);
  const fileType = file.type || 'application/octet-stream';
  const box = $('upload');
  const progress = $('upload-progress');
  const preview = $('upload-preview');
  const localUrl = fileType.startsWith('image/') ? URL.createObjectURL(file) : null;
  $('upload-label').textContent = `Uploading ${file.name}`;
  progress.value = 0;
  preview.hidden = !localUrl;
  if (localUrl) preview.src = localUrl;
  box.hidden = false;
  let shared = false;
  try {
    const ready = await request('upload_file_prepare', {
      recipient_id: id, is_group: isGroup, file_name: file.name, file_size: file.size, file_type: fileType,
    });
    await uploadFile(ready.upload_url, ready.upload_token, file, fileType, (pct) => { progress.value = pct; });
    if (localUrl) state.fileUrls.set(ready.file_id, localUrl); // our own copy is the preview
    const message = await request('upload_file_complete', {
      file_id: ready.file_id, recipient_id: id, is_group: isGroup, file_name: file.name, file_type: fileType,
    });
    shared = true;
    onNewMessage(message);
    announce(`${file.name} sent`);
  } catch (err) {
    showError(err);
  } finally {
    box.hidden = true;
    preview.removeAttribute('src');
    if (localUrl && !shared) URL.revokeObjectURL(localUrl);
    $('file-input').value = '';
  }
}

// -- typing -----------------------------------------------------------------------------

let typingSentAt = 0;
let typingTo = null;
let typingIdleTimer = null;

function emitTyping(key, isTyping) {
  const {isGroup, id} = parseKey(key);
  state.conn?.request('typing', {recipient_id: id, is_group: isGroup, is_typing: isTyping}).catch(() => {});
}

function onComposerInput() {
  const input = $('composer-input');
  input.rows = Math.min(5, Math.max(1, input.value.split('\n').length));
  if (!state.current || !input.value) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (typingTo !== state.current || now - typingSentAt > TYPING_SEND_EVERY) {
    if (typingTo && typingTo !== state.current) emitTyping(typingTo, false);
    typingTo = state.current;
    typingSentAt = now;
    emitTyping(typingTo, true);
  }
  clearTimeout(typingIdleTimer);
  typingIdleTimer = setTimeout(stopTyping, TYPING_IDLE);
}

function stopTyping() {
  clearTimeout(typingIdleTimer);
  if (typingTo) emitTyping(typingTo, false);
  typingTo = null;
  typingSentAt = 0;
}

function onTypingIndicator(t) {
  if (t.user_id === myId()) return;
  const key = t.is_group ? keyOf(true, t.chat_id) : keyOf(false, t.user_id);
  if (!t.is_typing) {
    clearTyping(key, t.user_id);
    return;
  }
  if (!state.typing.has(key)) state.typing.set(key, new Map());
  const typers = state.typing.get(key);
  clearTimeout(typers.get(t.user_id)?.timer);
  typers.set(t.user_id, {username: t.username, timer: setTimeout(() => clearTyping(key, t.user_id), TYPING_SHOWN)});
  renderChats();
  if (key === state.current) renderConversationHeader();
}

function clearTyping(key, userId) {
  const typers = state.typing.get(key);
  if (!typers?.has(userId)) return;
  clearTimeout(typers.get(userId).timer);
  typers.delete(userId);
  renderChats();
  if (key === state.current) renderConversationHeader();
}

function typingNames(key) {
  const typers = state.typing.get(key);
  if (!typers || typers.size === 0) return '';
  return [...typers.values()].map((t) => t.username).join(' and ');
}

// -- presence -----------------------------------------------------------------------------

function onUserStatus(s) {
  const online = s.status === 'online';
  const chat = state.chats.get(keyOf(false, s.user_id));
  if (chat) Object.assign(chat, {status: s.status, last_seen: online ? chat.last_seen : s.last_seen ?? null});
  const contact = state.contacts.get(s.user_id);
  if (contact) Object.assign(contact, {is_online: online, last_seen: online ? contact.last_seen : s.last_seen ?? null});
  for (const info of state.groups.values()) {
    for (const m of info.members) if (m.user_id === s.user_id) Object.assign(m, {is_online: online});
  }
  renderChats();
  renderContacts();
  renderConversationHeader();
  renderGroupPanel();
}

// -- groups -----------------------------------------------------------------------------

function friends() {
  return [...state.contacts.values()].filter((c) => c.status === 'FRIEND')
    .sort((a, b) => a.username.localeCompare(b.username));
}

let memberChoices = null;
function renderGroupMemberChoices() {
  const box = $('new-group-members');
  const list = friends();
  const signature = list.map((f) => `${f.user_id}:${f.username}`).join(',');
  if (signature === memberChoices) return; // unchanged: keep the ticks and the focus
  memberChoices = signature;
  const checked = new Set([...box.querySelectorAll('input:checked')].map((i) => i.value));
  refill(box, list.length ? list.map((f) => h('label', {class: 'checkbox'},
    h('input', {type: 'checkbox', value: String(f.user_id), checked: checked.has(String(f.user_id)),
      dataset: {focus: `member${f.user_id}`}}), f.username))
    : h('p', {class: 'muted'}, 'Your friends appear here.'));
}

async function createGroup(event) {
  event.preventDefault();
  const name = $('new-group-name').value.trim();
  if (!name) return;
  const memberIds = [...$('new-group-members').querySelectorAll('input:checked')].map((i) => Number(i.value));
  try {
    const info = await request('create_group', {
      name, member_ids: memberIds, topic: $('new-group-topic').value.trim(),
      visibility: $('new-group-visibility').value, join_rule: $('new-group-join-rule').value,
      kind: $('new-group-broadcast').checked ? 'broadcast' : 'group',
    });
    onGroupCreated(info);
    $('new-group-name').value = '';
    $('new-group-topic').value = '';
    $('new-group').open = false;
    openChat(keyOf(true, info.id));
  } catch (err) {
    showError(err);
  }
}

function onGroupCreated(info) {
  state.groups.set(info.id, info);
  const key = keyOf(true, info.id);
  if (!state.chats.has(key)) {
    state.chats.set(key, {
      id: info.id, name: info.name, description: info.description, member_count: info.member_count,
      last_message: null, unread_count: 0, is_group: true,
    });
  }
  renderChats();
}

function onGroupUpdated(u) {
  const key = keyOf(true, u.chat_id);
  const chat = state.chats.get(key);
  if (chat) Object.assign(chat, {name: u.name, description: u.description});
  if (chat && 'avatar_url' in u) chat.avatar_url = u.avatar_url;
  const info = state.groups.get(u.chat_id);
  if (info) {
    Object.assign(info, {name: u.name, description: u.description});
    for (const field of GROUP_SETTINGS) if (field in u) info[field] = u[field];
    if ('avatar_url' in u) info.avatar_url = u.avatar_url;
  }
  renderChats();
  if (key === state.current) {
    renderConversationHeader();
    renderGroupPanel();
  }
}

function onGroupMemberAdded(a) {
  const key = keyOf(true, a.chat_id);
  if (a.user_id === myId() || !state.chats.has(key)) {
    reloadChatsSoon();
    return;
  }
  const chat = state.chats.get(key);
  chat.member_count = (chat.member_count || 0) + 1;
  renderChats();
  if (state.groups.has(a.chat_id)) loadChatInfo(key).catch(showError);
}

function onGroupMemberRemoved(r) {
  const key = keyOf(true, r.chat_id);
  if (r.user_id === myId()) {
    state.chats.delete(key);
    state.convs.delete(key);
    state.groups.delete(r.chat_id);
    if (state.current === key) closeChat();
    renderChats();
    announce('You are no longer in that group');
    return;
  }
  const chat = state.chats.get(key);
  if (chat) chat.member_count = Math.max(0, (chat.member_count || 1) - 1);
  const info = state.groups.get(r.chat_id);
  if (info) {
    info.members = info.members.filter((m) => m.user_id !== r.user_id);
    info.member_count = info.members.length;
  }
  renderChats();
  if (key === state.current) {
    renderConversationHeader();
    renderGroupPanel();
  }
}

function showGroupPanel(show) {
  $('group-panel').hidden = !show;
  $('group-button').setAttribute('aria-expanded', String(show));
  if (show) renderGroupPanel();
}

function renderGroupPanel() {
  const key = state.current;
  if (!key || $('group-panel').hidden) return;
  const {isGroup, id} = parseKey(key);
  const info = isGroup && state.groups.get(id);
  if (!info) return;
  const mine = info.role || (info.is_admin ? 'admin' : 'member');
  const admin = atLeast(mine, 'admin');
  const moderator = atLeast(mine, 'moderator');
  const input = $('rename-group-input');
  if (document.activeElement !== input) input.value = info.name;
  $('rename-group-form').hidden = !admin;
  $('add-member-form').hidden = !admin;
  $('group-role').textContent = `Your role: ${mine}${info.kind === 'broadcast' ? ' · a broadcast: moderators post' : ''}`
    + (info.topic ? ` · ${info.topic}` : '');
  renderGroupSettings(info, admin);
  refill($('group-members'), info.members.map((m) => renderMember(id, m, mine)));
  const cursor = state.memberCursors.get(id);
  $('group-members-more').hidden = cursor === null || (cursor === undefined && info.member_count <= info.members.length);
  renderJoinRequests(id, moderator);
  $('group-invites-section').hidden = !admin;
  $('group-bans-section').hidden = !moderator;
  const inGroup = new Set(info.members.map((m) => m.user_id));
  const candidates = friends().filter((f) => !inGroup.has(f.user_id));
  fill($('add-member-select'), candidates.length
    ? candidates.map((f) => h('option', {value: String(f.user_id)}, f.username))
    : h('option', {value: ''}, 'No friends left to add'));
}

async function groupAction(event, payload, done = '') {
  try {
    await request(event, payload);
    if (done) announce(done);
  } catch (err) {
    showError(err);
  }
}

async function renameGroup(event) {
  event.preventDefault();
  const name = $('rename-group-input').value.trim();
  if (!name) return;
  await groupAction('update_group', {chat_id: parseKey(state.current).id, name});
}

async function addMember(event) {
  event.preventDefault();
  const userId = Number($('add-member-select').value);
  if (!userId) return;
  await groupAction('add_group_member', {chat_id: parseKey(state.current).id, user_id: userId});
}

async function leaveGroup() {
  if (!window.confirm(`Leave ${chatName(state.current)}?`)) return;
  await groupAction('leave_group', {chat_id: parseKey(state.current).id});
}

// -- communities: roles, moderation, joining (docs/api.md "Roles", "Joining groups") -------

const ROLES = ['owner', 'admin', 'moderator', 'member', 'reader'];
const GROUP_SETTINGS = ['visibility', 'join_rule', 'kind', 'topic', 'slow_mode', 'read_only', 'avatar_file_id'];
const rank = (role) => { const i = ROLES.indexOf(role); return i < 0 ? ROLES.length : i; };
const atLeast = (role, floor) => rank(role) <= rank(floor);
const outranks = (role, other) => rank(role) < rank(other);

function renderGroupSettings(info, admin) {
  const form = $('group-settings-form');
  form.hidden = !admin;
  if (!admin || form.contains(document.activeElement)) return; // keep what is being edited
  $('group-topic-input').value = info.topic || '';
  $('group-visibility-select').value = info.visibility || 'private';
  $('group-join-rule-select').value = info.join_rule || 'invite';
  $('group-slow-mode-input').value = String(info.slow_mode || 0);
  $('group-read-only-input').checked = Boolean(info.read_only);
  $('group-broadcast-input').checked = info.kind === 'broadcast';
}

async function saveGroupSettings(event) {
  event.preventDefault();
  const slow = Number($('group-slow-mode-input').value || 0);
  await groupAction('update_group', {
    chat_id: parseKey(state.current).id,
    topic: $('group-topic-input').value.trim(),
    visibility: $('group-visibility-select').value,
    join_rule: $('group-join-rule-select').value,
    slow_mode: Number.isInteger(slow) ? Math.min(21600, Math.max(0, slow)) : 0,
    read_only: $('group-read-only-input').checked,
    kind: $('group-broadcast-input').checked ? 'broadcast' : 'group',
  }, 'Group settings saved');
}

/** A group's picture: an image upload of ours (as a profile's avatar), set at once; `null` removes it. */
async function setGroupPicture(file) {
  const {id} = parseKey(state.current);
  try {
    const fileId = file ? await uploadAvatar(file, $('upload-progress')) : '';
    await groupAction('update_group', {chat_id: id, avatar_file_id: fileId}, file ? 'Group picture set' : 'Group picture removed');
  } catch (err) {
    showError(err);
  }
  $('group-avatar-input').value = '';
}

/** One member of the panel: their role, and what the viewer's role lets them do to a lower one. */
function renderMember(groupId, m, mine) {
  const me = m.user_id === myId();
  const name = nameOf(m);
  const below = !me && outranks(mine, m.role);
  const actions = [];
  if (below && atLeast(mine, 'admin')) {
    const choices = ROLES.filter((r) => outranks(mine, r) || (mine === 'owner' && r === 'owner'));
    actions.push(h('label', {class: 'visually-hidden', for: `role${m.user_id}`}, `Role of ${name}`),
      h('select', {id: `role${m.user_id}`, class: 'small', dataset: {focus: `role${m.user_id}`},
        onchange: (e) => setRole(groupId, m, e.target.value)},
      choices.map((r) => h('option', {value: r, selected: r === m.role}, r))));
  }
  if (below && atLeast(mine, 'moderator')) {
    actions.push(
      h('button', {type: 'button', class: 'small link', 'aria-label': `Mute ${name} for an hour`,
        dataset: {focus: `mute${m.user_id}`},
        onclick: () => groupAction('mute_member', {chat_id: groupId, user_id: m.user_id, duration: 3600},
          `${name} is muted for an hour`)}, 'Mute'),
      h('button', {type: 'button', class: 'small link', 'aria-label': `Unmute ${name}`,
        dataset: {focus: `unmute${m.user_id}`},
        onclick: () => groupAction('unmute_member', {chat_id: groupId, user_id: m.user_id}, `${name} may write again`)},
      'Unmute'),
      h('button', {type: 'button', class: 'small link danger', 'aria-label': `Ban ${name}`,
        dataset: {focus: `ban${m.user_id}`}, onclick: () => banMember(groupId, m)}, 'Ban'));
  }
  if (below && atLeast(mine, 'admin')) {
    actions.push(h('button', {type: 'button', class: 'small link danger', 'aria-label': `Remove ${name}`,
      dataset: {focus: `remove${m.user_id}`},
      onclick: () => groupAction('remove_group_member', {chat_id: groupId, user_id: m.user_id})}, 'Remove'));
  }
  return h('li', {class: 'member', dataset: {user: String(m.user_id)}},
    avatar(me ? state.profile || m : m, {size: 'small', online: m.is_online, userId: m.user_id}),
    h('span', {class: 'member-name'}, me ? `${name} (you)` : name),
    m.role && m.role !== 'member' ? h('span', {class: 'tag role'}, m.role) : null,
    m.is_online ? h('span', {class: 'visually-hidden'}, ', online') : null,
    actions);
}

async function setRole(groupId, m, role) {
  if (role === 'owner' && !window.confirm(`Hand the group over to ${nameOf(m)}? You become an admin.`)) {
    renderGroupPanel();
    return;
  }
  await groupAction('set_member_role', {chat_id: groupId, user_id: m.user_id, role}, `${nameOf(m)} is now ${role}`);
}

async function banMember(groupId, m) {
  if (!window.confirm(`Ban ${nameOf(m)} from ${chatName(keyOf(true, groupId))}? Their last hour of messages goes too.`)) {
    return;
  }
  await groupAction('ban_member', {chat_id: groupId, user_id: m.user_id, delete_messages: '1h'}, `${nameOf(m)} is banned`);
  loadBans(groupId).catch(showError);
}

/** get_members past the first members chat_info lists. */
async function loadMoreMembers() {
  const {id} = parseKey(state.current);
  const info = state.groups.get(id);
  const cursor = state.memberCursors.get(id);
  if (!info || cursor === null) return;
  try {
    const page = await request('get_members', cursor ? {chat_id: id, cursor, limit: 100} : {chat_id: id, limit: 100});
    const known = new Set(info.members.map((m) => m.user_id));
    for (const m of page.members) {
      if (!known.has(m.user_id)) {
        info.members.push({...m, is_online: m.online, is_admin: m.role === 'owner' || m.role === 'admin'});
      }
    }
    state.memberCursors.set(id, page.next_cursor);
    renderGroupPanel();
  } catch (err) {
    showError(err);
  }
}

function renderJoinRequests(groupId, moderator) {
  const asked = state.requests.get(groupId) || new Map();
  $('group-requests-section').hidden = !moderator || asked.size === 0;
  refill($('group-requests'), [...asked].map(([userId, username]) => h('li', {class: 'member'},
    h('span', {class: 'member-name'}, username),
    h('button', {type: 'button', class: 'small', dataset: {focus: `approve${userId}`},
      'aria-label': `Let ${username} in`, onclick: () => answerRequest(groupId, userId, true)}, 'Approve'),
    h('button', {type: 'button', class: 'small link danger', dataset: {focus: `reject${userId}`},
      'aria-label': `Turn ${username} away`, onclick: () => answerRequest(groupId, userId, false)}, 'Reject'))));
}

async function answerRequest(groupId, userId, approve) {
  try {
    await request(approve ? 'approve_join' : 'reject_join', {chat_id: groupId, user_id: userId});
  } catch (err) {
    showError(err);
  }
  state.requests.get(groupId)?.delete(userId); // answered, or answered by another moderator meanwhile
  renderGroupPanel();
}

function onJoinRequested(r) {
  if (!state.requests.has(r.chat_id)) state.requests.set(r.chat_id, new Map());
  state.requests.get(r.chat_id).set(r.user_id, r.username);
  announce(`${r.username} asks to join ${chatName(keyOf(true, r.chat_id))}`);
  if (state.current === keyOf(true, r.chat_id)) renderGroupPanel();
}

function onGroupJoined(info) {
  onGroupCreated(info);
  announce(`You joined ${info.name}`);
}

function onMemberRoleChanged(c) {
  const info = state.groups.get(c.chat_id);
  if (info) {
    const member = info.members.find((m) => m.user_id === c.user_id);
    const isAdmin = c.role === 'owner' || c.role === 'admin';
    if (member) Object.assign(member, {role: c.role, is_admin: isAdmin});
    if (c.user_id === myId()) Object.assign(info, {role: c.role, is_admin: isAdmin});
  }
  if (c.user_id === myId()) announce(`You are now ${c.role} in ${chatName(keyOf(true, c.chat_id))}`);
  if (state.current === keyOf(true, c.chat_id)) {
    renderGroupPanel();
    renderComposerRule();
  }
}

function onMemberBanned(b) {
  if (b.user_id === myId()) announce(`You were banned from ${chatName(keyOf(true, b.chat_id))}`);
  else if (state.current === keyOf(true, b.chat_id) && !$('group-panel').hidden) loadBans(b.chat_id).catch(showError);
}

function onMemberMuted(m) {
  const until = m.until ? new Date(m.until) : null;
  const muted = !until || until.getTime() > Date.now();
  const info = state.groups.get(m.chat_id);
  if (m.user_id === myId()) {
    if (info) info.muted_until = muted ? (m.until || 'forever') : null;
    announce(muted ? `You are muted in ${chatName(keyOf(true, m.chat_id))}` : 'You may write again');
    if (state.current === keyOf(true, m.chat_id)) renderComposerRule();
  }
}

/** Whether this user may post in the open group right now, and why not: the composer says so. */
function renderComposerRule() {
  const input = $('composer-input');
  const key = state.current;
  let why = '';
  if (key && parseKey(key).isGroup) {
    const info = state.groups.get(parseKey(key).id);
    const role = info?.role || 'member';
    if (role === 'reader') why = 'You can read this group but not write in it';
    else if (info?.kind === 'broadcast' && !atLeast(role, 'moderator')) why = 'Only moderators post in this broadcast';
    else if (info?.read_only && !atLeast(role, 'admin')) why = 'This group is read-only';
    else if (info?.muted_until) why = 'You are muted in this group';
  }
  input.disabled = Boolean(why);
  $('send-button').disabled = Boolean(why);
  input.placeholder = why || 'Write a message';
}

async function loadInvites(groupId) {
  const found = await request('get_invite_links', {chat_id: groupId});
  refill($('group-invites'), found.links.map((link) => h('li', {class: 'member'},
    h('span', {class: 'member-name'}, `${link.code_prefix}…`),
    h('span', {class: 'muted small'}, `${link.uses}${link.max_uses ? `/${link.max_uses}` : ''} used`
      + (link.expires_at ? `, until ${new Date(link.expires_at * 1000).toLocaleString()}` : '')),
    h('button', {type: 'button', class: 'small link danger', dataset: {focus: `revoke${link.link_id}`},
      'aria-label': `Revoke the link ${link.code_prefix}`,
      onclick: async () => {
        await groupAction('revoke_invite_link', {link_id: link.link_id}, 'Link revoked');
        fill($('invite-new')); // the code shown may be the one just revoked
        loadInvites(groupId).catch(showError);
      }}, 'Revoke'))));
}

async function createInvite(event) {
  event.preventDefault();
  const {id} = parseKey(state.current);
  const payload = {chat_id: id};
  const uses = Number($('invite-max-uses').value);
  if (uses > 0) payload.max_uses = Math.min(100000, Math.floor(uses));
  const expires = Number($('invite-expires').value);
  if (expires > 0) payload.expires_in = expires;
  try {
    const link = await request('create_invite_link', payload);
    // The code is shown this once (only its digest is kept): whoever has it may join.
    fill($('invite-new'), 'New invite code (shown once): ', h('code', {class: 'invite-code'}, link.code));
    await loadInvites(id);
  } catch (err) {
    showError(err);
  }
}

async function loadBans(groupId) {
  const found = await request('get_bans', {chat_id: groupId});
  refill($('group-bans'), found.bans.map((b) => h('li', {class: 'member'},
    h('span', {class: 'member-name'}, b.username || `user ${b.user_id}`),
    b.reason ? h('span', {class: 'muted small'}, b.reason) : null,
    h('button', {type: 'button', class: 'small link', dataset: {focus: `unban${b.user_id}`},
      'aria-label': `Lift the ban of ${b.username || b.user_id}`,
      onclick: async () => {
        await groupAction('unban_member', {chat_id: groupId, user_id: b.user_id}, 'Ban lifted');
        loadBans(groupId).catch(showError);
      }}, 'Unban'))));
}

/** The panel's lists that only moderators and admins read, fetched when it opens. */
async function loadGroupExtras(key) {
  const {isGroup, id} = parseKey(key);
  const info = isGroup && state.groups.get(id);
  if (!info) return;
  fill($('invite-new'));
  if (atLeast(info.role, 'admin')) await loadInvites(id);
  if (atLeast(info.role, 'moderator')) await loadBans(id);
  renderGroupPanel();
}

async function searchDirectory(event, more = false) {
  event?.preventDefault();
  const query = more ? state.directory.query : $('directory-query').value.trim();
  const payload = {limit: 20};
  if (query) payload.query = query;
  if (more && state.directory.cursor) payload.cursor = state.directory.cursor;
  try {
    const page = await request('list_public_groups', payload);
    state.directory = {query, cursor: page.next_cursor};
    const items = page.groups.map(renderDirectoryItem);
    if (more) $('directory-list').append(...items);
    else refill($('directory-list'), items.length ? items : h('li', {class: 'muted'}, 'No public group matches.'));
    $('directory-more').hidden = !page.next_cursor;
  } catch (err) {
    showError(err);
  }
}

function renderDirectoryItem(g) {
  const key = keyOf(true, g.chat_id);
  const member = state.chats.has(key);
  const label = member ? 'Open' : g.join_rule === 'open' ? 'Join' : g.join_rule === 'request' ? 'Ask to join' : null;
  return h('li', {class: 'member directory-item', dataset: {group: String(g.chat_id)}},
    avatar({name: g.name, avatar_url: g.avatar_url}, {size: 'small', group: true}),
    h('span', {class: 'member-name'}, g.name,
      h('span', {class: 'muted small directory-meta'},
        ` ${g.member_count} member${g.member_count === 1 ? '' : 's'}${g.kind === 'broadcast' ? ' · broadcast' : ''}`
        + (g.topic ? ` · ${g.topic}` : ''))),
    label ? h('button', {type: 'button', class: 'small', dataset: {focus: `join${g.chat_id}`},
      'aria-label': `${label} ${g.name}`, onclick: () => (member ? openChat(key) : joinGroup(g))}, label)
      : h('span', {class: 'muted small'}, 'by invitation'));
}

async function joinGroup(g) {
  try {
    const answer = await request('join_group', {chat_id: g.chat_id});
    if (answer.status === 'requested') {
      announce(`Asked to join ${g.name}: a moderator will answer`);
      showError(new Error(`Asked to join ${g.name}: a moderator will answer`));
      return;
    }
    onGroupJoined(answer);
    openChat(keyOf(true, answer.id));
  } catch (err) {
    showError(err);
  }
}

async function joinByInvite(event) {
  event.preventDefault();
  const code = $('invite-join-code').value.trim();
  if (!code) return;
  try {
    const info = await request('join_by_invite', {code});
    $('invite-join-code').value = '';
    onGroupJoined(info);
    openChat(keyOf(true, info.id));
  } catch (err) {
    showError(err);
  }
}

// -- server -> client events ------------------------------------------------------------

/**
 * Every server -> client event this client handles.  New server features add an entry
 * here (message_edited, reaction_updated, contact_unblocked, contact_removed,
 * profile_updated, ...).  Answers to our own requests come back as acks (api.js).
 */
const SERVER_EVENTS = {
  connection_successful: (hello) => {
    if (state.session && hello.user_id) Object.assign(state.session, {user_id: hello.user_id, username: hello.username});
  },
  session_status: (s) => {
    if (s.valid === false) {
      stop();
      clearSession();
      showLogin(s.message || 'Your session has ended. Please log in again.');
    }
  },
  new_message: onNewMessage,
  thread_updated: onThreadUpdated,
  message_deleted: onMessageDeleted,
  message_edited: onMessageEdited,
  message_preview: onMessagePreview,
  reaction_updated: onReactionUpdated,
  messages_read: onMessagesRead,
  chat_read: (r) => {
    // A read (or mark_unread) on any of this user's devices: the badge as the server counts it.
    const chat = state.chats.get(keyOf(r.is_group, r.chat_id));
    if (!chat) return;
    Object.assign(chat, {unread_count: r.unread_count, mention_count: r.mention_count});
    renderChats();
  },
  messages_delivered: onMessagesDelivered,
  typing_indicator: onTypingIndicator,
  user_status: onUserStatus,
  contact_added: (c) => {
    state.outgoing.add(c.user_id);
    saveOutgoing();
    state.contacts.set(c.user_id, {...state.contacts.get(c.user_id), ...c, is_online: false});
    renderContacts();
  },
  contact_request: (c) => {
    state.outgoing.delete(c.user_id);
    state.contacts.set(c.user_id, {user_id: c.user_id, username: c.username, status: 'NEW', is_online: false});
    renderContacts();
    announce(`${c.username} wants to be your contact`);
  },
  contact_accepted: (c) => {
    state.outgoing.delete(c.user_id);
    saveOutgoing();
    loadContacts().catch(showError);
    reloadChatsSoon();
    announce(`${c.username} is now your contact`);
  },
  contact_rejected: (c) => {
    state.outgoing.delete(c.user_id);
    saveOutgoing();
    state.contacts.delete(c.user_id);
    renderContacts();
  },
  contact_blocked: () => {
    loadContacts().catch(showError);
    reloadChatsSoon();
  },
  contact_unblocked: (c) => {
    loadContacts().catch(showError);
    reloadChatsSoon();
    announce(`${c.username} is unblocked`);
  },
  contact_removed: onContactRemoved,
  profile_updated: onProfileUpdated,
  profile: onProfileUpdated,
  group_created: onGroupCreated,
  group_updated: onGroupUpdated,
  group_member_added: onGroupMemberAdded,
  group_member_removed: onGroupMemberRemoved,
  group_joined: onGroupJoined,
  join_requested: onJoinRequested,
  join_rejected: (r) => announce(`Your request to join ${chatName(keyOf(true, r.chat_id))} was turned down`),
  member_role_changed: onMemberRoleChanged,
  member_banned: onMemberBanned,
  member_muted: onMemberMuted,
  error: (e) => console.debug('server error event', e), // requests see their errors in the ack
};

// -- wiring -----------------------------------------------------------------------------

function wire() {
  $('login-form').addEventListener('submit', (e) => { e.preventDefault(); submitLogin(false); });
  $('register-button').addEventListener('click', () => submitLogin(true));
  $('logout-button').addEventListener('click', logout);
  $('report-form').addEventListener('submit', sendReport);
  $('report-cancel').addEventListener('click', () => $('report-dialog').close());
  $('reports-button').addEventListener('click', () => openReports().catch(showError));
  $('reports-more').addEventListener('click', () => loadReports(true).catch(showError));
  $('reports-close').addEventListener('click', () => $('reports-dialog').close());
  $('add-contact-form').addEventListener('submit', addContact);
  $('new-group-form').addEventListener('submit', createGroup);
  $('profile-form').addEventListener('submit', saveProfile);
  $('totp-form').addEventListener('submit', confirmTotp);
  $('totp-setup').addEventListener('click', setUpTotp);
  $('totp-disable').addEventListener('click', () => showTotpCode('disable', 'Type a code from your app to turn it off.'));
  $('profile-avatar-input').addEventListener('change', (e) => chooseAvatar(e.target.files[0]));
  $('profile-avatar-remove').addEventListener('click', removeAvatarChoice);
  $('composer-context-cancel').addEventListener('click', () => {
    stopComposing(true);
    $('composer-input').focus();
  });
  $('composer').addEventListener('submit', sendText);
  $('composer-input').addEventListener('input', () => {
    onComposerInput();
    updateMentions();
  });
  $('composer-input').addEventListener('blur', closeMentions);
  $('composer-input').addEventListener('keydown', (e) => {
    if (!e.isComposing && mentionKey(e)) return;
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    } else if (e.key === 'Escape' && state.composing) {
      e.preventDefault();
      e.stopPropagation();
      stopComposing(true);
    }
  });
  $('file-input').addEventListener('change', (e) => sendFile(e.target.files[0]));
  $('load-older').addEventListener('click', loadOlder);
  $('thread-composer').addEventListener('submit', (e) => sendThreadReply(e).catch(showError));
  $('thread-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('thread-composer').requestSubmit();
    }
  });
  $('thread-close').addEventListener('click', closeThread);
  $('back-button').addEventListener('click', () => closeChat());
  $('group-button').addEventListener('click', () => {
    const show = $('group-panel').hidden;
    showGroupPanel(show);
    if (show) loadChatInfo(state.current).then(() => loadGroupExtras(state.current)).catch(showError);
  });
  $('rename-group-form').addEventListener('submit', renameGroup);
  $('group-settings-form').addEventListener('submit', saveGroupSettings);
  $('group-avatar-input').addEventListener('change', (e) => { if (e.target.files[0]) setGroupPicture(e.target.files[0]); });
  $('group-avatar-remove').addEventListener('click', () => setGroupPicture(null));
  $('group-members-more').addEventListener('click', loadMoreMembers);
  $('invite-create-form').addEventListener('submit', createInvite);
  $('directory-form').addEventListener('submit', (e) => searchDirectory(e));
  $('directory-more').addEventListener('click', () => searchDirectory(null, true));
  $('directory').addEventListener('toggle', () => { if ($('directory').open) searchDirectory(null); });
  $('invite-join-form').addEventListener('submit', joinByInvite);
  $('add-member-form').addEventListener('submit', addMember);
  $('leave-group-button').addEventListener('click', leaveGroup);
  $('messages').addEventListener('scroll', () => { stickToBottom = messagesNearBottom(); });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('group-panel').hidden) {
      showGroupPanel(false);
      $('group-button').focus();
    } else if (e.key === 'Escape' && state.current && window.matchMedia('(max-width: 720px)').matches) {
      closeChat();
    }
  });
  document.addEventListener('visibilitychange', queueReads);
  // "last seen 5 min ago" ages.
  setInterval(() => {
    if (!state.session) return;
    renderChats();
    renderConversationHeader();
  }, 60000);
}

wire();
const oidc = takeOidcResult();
if (oidc.session) saveSession(oidc.session);
const saved = loadSession();
if (saved) start(saved);
else showLogin(oidc.error);
http.oidcConfig().then((offered) => {
  if (!offered.enabled) return;
  $('oidc-button').textContent = `Sign in with ${offered.provider}`;
  $('oidc-button').addEventListener('click', () => { window.location.assign('/api/oidc/login'); });
  $('oidc-row').hidden = false;
});
