"""The web client in two real browsers against the real daemon.

``twistd -n umoc`` runs in a subprocess; two headless Chromium sessions (selenium,
Debian's ``chromium`` and ``chromium-driver``) register, become contacts, set a profile
with an avatar, chat with typing indicators and delivery and read receipts, reply, edit
and react, share an image, chat in a group with a mention, reconnect and catch up, reload
the page and find the conversation again, and block, unblock and remove each other; then
Alice reports Bob's message and, made an administrator with ``umoc-admin``, resolves the
report in her Reports view by banning him from the group.
Screenshots of the main screens go to ``docs/screenshots`` (or ``$UMOC_SCREENSHOT_DIR``).

The browsers are driven synchronously from a thread (selenium blocks); the server is
another process, and the reactor only waits for that thread.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from typing import Any

from twisted.internet import error, reactor, threads
from twisted.trial import unittest

from tests.events.test_previews import PAGE, Site, listen
from tests.support.daemon import TWISTD, Daemon
from tests.support.deferreds import inline

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = os.environ.get("UMOC_SCREENSHOT_DIR") or os.path.join(ROOT, "docs", "screenshots")
WAIT = 15

PASSWORD = "correct horse battery"


def _missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install selenium)"
    if not os.path.exists(CHROMIUM):
        return "chromium is not installed (apt-get install chromium)"
    if not os.path.exists(CHROMEDRIVER):
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


def png(width: int = 160, height: int = 100, warm: bool = False) -> bytes:
    """A small gradient PNG, made here (blue to green, or warm: orange to pink)."""

    def pixel(x: int, y: int) -> bytes:
        return bytes((240 - y // 2, 120 + x // 2, 60 + y)) if warm else bytes((40 + x, 110 + y, 220 - x // 2))

    rows = b"".join(b"\x00" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Browser:
    """One headless Chromium with the few steps the story needs."""

    def __init__(self, url: str, name: str, *extra: str) -> None:
        """``extra``: more Chromium switches (``--host-resolver-rules=...``)."""
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1000,700",
            "--lang=en-US",
            "--hide-scrollbars",
            *extra,
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.url = url
        self.name = name

    def find(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        """Find and click, again if a live re-render replaced the element in between."""

        def clicked() -> bool:
            self.find(css).click()
            return True

        self.until(clicked, f"a click on {css}")

    def attribute(self, css: str, name: str) -> Any:
        """An attribute of the element found, read again if a live re-render replaced it in between."""
        return self.until(lambda: self.find(css).get_attribute(name), f"{name} of {css}")

    def until(self, condition: Any, what: str) -> Any:
        def attempt() -> Any:
            try:
                return condition()
            except WebDriverException as exc:
                # Chromium names an element of a page just navigated away from (a sign-in redirect) this way,
                # not as a stale element: the same "gone a moment ago", so look again.
                if "does not belong to the document" in str(exc):
                    return None
                raise

        try:
            # Lists are re-rendered on live events: an element found a moment ago may be gone.
            wait = WebDriverWait(self.driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))
            return wait.until(lambda d: attempt())
        except TimeoutException:
            raise AssertionError(f"{self.name}: timed out waiting for {what}") from None

    def visible(self, css: str) -> Any:
        def shown() -> Any:
            found = self.driver.find_elements(By.CSS_SELECTOR, css)
            return found[0] if found and found[0].is_displayed() else None

        return self.until(shown, css)

    def text_in(self, css: str, text: str) -> Any:
        def has() -> Any:
            for el in self.driver.find_elements(By.CSS_SELECTOR, css):
                if text in el.text:
                    return el
            return None

        return self.until(has, f"{text!r} in {css}")

    def type(self, css: str, text: str) -> None:
        field = self.visible(css)
        field.clear()
        field.send_keys(text)

    def register(self, username: str) -> None:
        self.driver.get(self.url)
        self.type("#login-username", username)
        self.type("#login-password", PASSWORD)
        self.click("#register-button")
        self.text_in("#me", username)
        self.text_in("#connection", "Online")

    def send(self, text: str) -> None:
        self.type("#composer-input", text)
        self.find("#composer-input").send_keys(Keys.ENTER)
        self.text_in(".message.mine .text", text)

    def shot(self, name: str) -> None:
        os.makedirs(SHOTS, exist_ok=True)
        self.driver.save_screenshot(os.path.join(SHOTS, name))

    def image_loaded(self, css: str) -> bool:
        return bool(
            self.driver.execute_script(
                "const i = document.querySelector(arguments[0]); return !!i && i.complete && i.naturalWidth > 0;", css
            )
        )

    def gone(self, css: str, what: str) -> None:
        self.until(lambda: not self.driver.find_elements(By.CSS_SELECTOR, css), what)

    def accept_confirmation(self) -> None:
        WebDriverWait(self.driver, WAIT).until(expected_conditions.alert_is_present()).accept()

    def network(self, online: bool) -> None:
        self.driver.set_network_conditions(offline=not online, latency=0, download_throughput=-1, upload_throughput=-1)

    def errors(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def quit(self) -> None:
        self.driver.quit()


class WebClientTests(unittest.TestCase):
    # Only a guard against a hung browser: two Chromiums on a loaded machine took 155 s of the 180 once.
    timeout = 600

    def setUp(self) -> None:
        missing = _missing()
        if missing:
            raise unittest.SkipTest(missing)

    def spawn(self) -> Daemon:
        work = tempfile.mkdtemp(prefix="umoc-web-")
        # Link previews of the test's own site on 127.0.0.1 (loopback is refused unless listed).  overload_wait
        # far above its 0.5 s, as in tests.support.server.test_config: on a loaded machine a write can wait that
        # long, and a refused send is a message the other browser never shows; overload_lag off for the same reason
        # (the browsers share the cores with the node, whose reactor then runs late).
        config = os.path.join(work, "umoc.yaml")
        with open(config, "w") as f:
            f.write('outbound:\n  allowed_hosts: ["127.0.0.1"]\nserver:\n  overload_wait: 20s\n  overload_lag: 0s\n')
        self.config, self.data_dir = config, os.path.join(work, "data")
        daemon = Daemon()
        argv = [
            sys.executable,
            "-c",
            TWISTD,
            "-n",
            "--pidfile",
            os.path.join(work, "twistd.pid"),
            "umoc",
            "--config",
            config,
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--data-dir",
            os.path.join(work, "data"),
        ]
        process = reactor.spawnProcess(daemon, sys.executable, argv, env=dict(os.environ), path=ROOT)

        async def stop() -> None:
            if not daemon.ended.called:
                try:
                    process.signalProcess(signal.SIGTERM)
                except error.ProcessExitedAlready:
                    pass
                await daemon.ended
            shutil.rmtree(work, ignore_errors=True)

        self.addCleanup(stop)
        return daemon

    @inline
    async def test_two_browsers_chat_share_an_image_and_meet_in_a_group(self) -> None:
        daemon = self.spawn()
        port = await daemon.listening
        # A page with OpenGraph tags and an image, for the link card.
        self.site_port = listen(
            self, Site({b"/page": ("text/html; charset=utf-8", PAGE), b"/img.png": ("image/png", png())})
        )
        await threads.deferToThread(self.story, f"http://127.0.0.1:{port}/")

    @inline
    async def test_a_public_group_found_joined_moderated_and_reached_by_invite(self) -> None:
        daemon = self.spawn()
        port = await daemon.listening
        await threads.deferToThread(self.story, f"http://127.0.0.1:{port}/", self._community)

    def story(self, url: str, plot: Any = None) -> None:
        plot = plot or self._story
        browsers: list[Browser] = []
        try:
            alice = Browser(url, "alice")
            browsers.append(alice)
            bob = Browser(url, "bob")
            browsers.append(bob)
            try:
                plot(alice, bob)
            except Exception:
                self.keep_evidence(browsers)
                raise
            for b in browsers:
                # Tolerated: requests failing while offline on purpose.
                errors = [e for e in b.errors() if "ERR_INTERNET_DISCONNECTED" not in e]
                self.assertEqual(errors, [], f"{b.name}'s console")
        finally:
            for b in browsers:
                b.quit()

    def keep_evidence(self, browsers: list[Browser]) -> None:
        """Each browser's screen and console, in trial's working directory, for a failed run."""
        for b in browsers:
            try:
                b.driver.save_screenshot(os.path.abspath(f"web-client-failure-{b.name}.png"))
                with open(f"web-client-failure-{b.name}.log", "w") as f:
                    for entry in b.driver.get_log("browser"):
                        f.write(f"{entry['level']} {entry['message']}\n")
            except Exception as exc:  # noqa: BLE001 - evidence is best effort
                print(f"no evidence from {b.name}: {exc}")

    def _story(self, alice: Browser, bob: Browser) -> None:
        # Log-in screen, then two new accounts.
        alice.driver.get(alice.url)
        alice.visible("#login-form")
        alice.shot("login.png")
        alice.register("alice")
        bob.register("bob")
        # Alice asks, Bob accepts: both get the direct chat.
        alice.type("#add-contact-username", "bob")
        alice.click("#add-contact-form button")
        alice.text_in("#contact-list .contact", "request sent")
        bob.text_in("#contact-list .contact", "wants to be your contact")
        bob.click("#contact-list .contact button")
        bob_chat = alice.visible("#chat-list .chat-item").get_attribute("data-key")
        alice_chat = bob.visible("#chat-list .chat-item").get_attribute("data-key")
        bob.text_in(".chat-item .presence", "online")
        alice_id, bob_id = alice_chat[1:], bob_chat[1:]

        # Alice's profile: a display name, a status and an avatar; Bob sees them live.
        avatar = os.path.join(tempfile.mkdtemp(), "alice.png")
        with open(avatar, "wb") as f:
            f.write(png(96, 96, warm=True))
        alice.click("#profile summary")
        alice.type("#profile-display-name", "Alice Liddell")
        alice.type("#profile-status-text", "Down the rabbit hole")
        alice.find("#profile-avatar-input").send_keys(avatar)
        alice.until(lambda: alice.image_loaded("#profile-avatar-preview img"), "the chosen avatar's preview")
        alice.click("#profile-save")
        alice.text_in("#me", "Alice Liddell")
        alice.until(lambda: alice.image_loaded("#me .avatar img"), "Alice's own avatar")
        alice.shot("profile.png")
        alice.click("#profile summary")
        bob.text_in(f'[data-key="{alice_chat}"] .chat-name', "Alice Liddell")
        bob.until(lambda: bob.image_loaded(f'[data-key="{alice_chat}"] .avatar img'), "Alice's avatar in the chat list")
        bob.text_in(f'#contact-list [data-user="{alice_id}"] .contact-bio', "Down the rabbit hole")
        bob.until(lambda: bob.image_loaded(f'#contact-list [data-user="{alice_id}"] .avatar img'), "in the contacts")

        # Alice types: Bob's chat list shows it; then the message arrives unread.
        alice.click(f'[data-key="{bob_chat}"]')
        alice.type("#composer-input", "Hello Bob")
        bob.text_in(".chat-item .chat-last.is-typing", "alice typing")
        alice.find("#composer-input").send_keys(Keys.ENTER)
        alice.text_in(".message.mine .text", "Hello Bob")
        bob.text_in(f'[data-key="{alice_chat}"] .badge', "1")
        bob.text_in(f'[data-key="{alice_chat}"] .chat-last', "Hello Bob")
        alice.visible(".message.mine .receipt.delivered")  # Bob's client has it; he has not read it
        bob.shot("chat-list.png")

        # Bob opens it: it is marked read and Alice sees so; Bob types back.
        bob.click(f'[data-key="{alice_chat}"]')
        bob.text_in(".message .text", "Hello Bob")
        bob.until(lambda: bob.image_loaded("#conversation-avatar img"), "Alice's avatar in the header")
        bob.until(lambda: bob.image_loaded(".message:not(.mine) .avatar img"), "Alice's avatar by her message")
        alice.visible(".message.mine .receipt.read")
        bob.until(
            lambda: not bob.driver.find_elements(By.CSS_SELECTOR, f'[data-key="{alice_chat}"] .badge'),
            "the unread badge to go",
        )
        bob.type("#composer-input", "Hi Alice! How are you?")
        alice.text_in("#typing", "bob is typing")
        bob.find("#composer-input").send_keys(Keys.ENTER)
        alice.text_in(".message:not(.mine) .text", "Hi Alice! How are you?")
        bob.visible(".message.mine .receipt.read")
        alice.until(lambda: alice.find("#typing").text == "", "the typing indicator to clear")

        # An image, uploaded with progress, previewed on both sides.
        picture = os.path.join(tempfile.mkdtemp(), "sunset.png")
        with open(picture, "wb") as f:
            f.write(png())
        alice.find("#file-input").send_keys(picture)
        alice.until(lambda: alice.image_loaded(".message.mine img.preview"), "Alice's image preview")
        bob.until(lambda: bob.image_loaded(".message img.preview"), "Bob's image preview")
        bob.text_in(".message figcaption a", "sunset.png")
        # A link: the server fetches the page and both sides show its card, with the server's copy of its image.
        alice.send(f"Look at http://127.0.0.1:{self.site_port}/page")
        bob.text_in(".message .link-card-title", "Caf\u00e9 & Co")
        alice.text_in(".message.mine .link-card-site", "Example")
        bob.until(lambda: bob.image_loaded(".message .link-card-image"), "the link card's image")
        href = bob.attribute(".message figcaption a", "href")
        self.assertIn("/api/files/", href)
        self.assertNotIn("token", href)  # issue 22 G14: the click fetches with headers and saves a blob: URL
        self.assertNotIn("sessionID", href)
        alice.send("Nice colours, right?")
        bob.text_in(".message .text", "Nice colours, right?")
        alice.shot("conversation.png")

        # Bob replies to that message: both see the quote above his answer.
        bob.text_in(".message:not(.mine)", "Nice colours, right?").find_element(
            By.CSS_SELECTOR, '[data-action="reply"]'
        ).click()
        bob.text_in("#composer-context-text", "Replying to Alice Liddell")
        bob.send("Yes, lovely")
        bob.text_in(".message.mine .reply-quote", "Nice colours, right?")
        alice.text_in(".message:not(.mine) .text", "Yes, lovely")
        alice.text_in(".message:not(.mine) .reply-quote", "Nice colours, right?")

        # Alice edits her message: Bob sees the new text, marked edited.
        alice.text_in(".message.mine", "Nice colours, right?").find_element(
            By.CSS_SELECTOR, '[data-action="edit"]'
        ).click()
        alice.text_in("#composer-context-text", "Editing")
        alice.type("#composer-input", "Nice colours, don't you think?")
        alice.find("#composer-input").send_keys(Keys.ENTER)
        alice.text_in(".message.mine .text", "don't you think?")
        bob.text_in(".message:not(.mine) .text", "Nice colours, don't you think?")
        bob.text_in(".message:not(.mine) .meta .edited", "edited")

        # Bob reacts to it: Alice sees the count.
        edited = bob.text_in(".message:not(.mine)", "don't you think?")
        edited.find_element(By.CSS_SELECTOR, '[data-action="react"]').click()
        thumbs = edited.find_element(By.CSS_SELECTOR, ".reaction-picker button")
        bob.until(thumbs.is_displayed, "the reaction picker")
        thumbs.click()
        bob.visible('.message:not(.mine) .reaction[aria-pressed="true"]')
        alice.text_in(".message.mine .reaction .reaction-count", "1")
        # Alice deletes a message: it goes from both screens.
        alice.send("Oops, wrong chat")
        bob.text_in(".message .text", "Oops, wrong chat")
        mistake = alice.text_in(".message.mine", "Oops, wrong chat")
        mistake.find_element(By.CSS_SELECTOR, '[data-action="delete"]').click()
        alice.accept_confirmation()
        for b in (alice, bob):
            b.until(lambda b=b: "Oops" not in b.find("#message-list").text, "the deleted message to go")

        # A group: Alice creates it with Bob, both write, Alice renames it.
        alice.click("#new-group summary")
        alice.type("#new-group-name", "Weekend plans")
        alice.visible("#new-group-members input[type=checkbox]").click()
        alice.click("#new-group-form button[type=submit]")
        alice.text_in("#conversation-title", "Weekend plans")
        group = alice.attribute(".chat-item.current", "data-key")
        self.assertTrue(group.startswith("g"))
        alice.send("Picnic on Saturday?")
        bob.text_in(f'[data-key="{group}"] .chat-last', "Picnic on Saturday?")
        bob.click(f'[data-key="{group}"]')
        bob.text_in(".message .sender", "Alice Liddell")
        bob.send("Count me in")
        alice.text_in(".message .text", "Count me in")
        # Bob answers in a thread: Alice sees the reply count under her message and opens the thread;
        # the reply stays out of the main timeline.
        bob.text_in("#message-list .message:not(.mine)", "Picnic on Saturday?").find_element(
            By.CSS_SELECTOR, '[data-action="thread"]'
        ).click()
        bob.visible("#thread-panel")
        bob.type("#thread-input", "What time?")
        bob.find("#thread-input").send_keys(Keys.ENTER)
        bob.text_in("#thread-list .message.mine .text", "What time?")
        alice.text_in("#message-list .thread-summary", "1 reply")
        alice.click("#message-list .thread-summary")
        alice.text_in("#thread-list .message:not(.mine) .text", "What time?")
        self.assertNotIn("What time?", alice.find("#message-list").text)
        alice.click("#thread-close")
        bob.click("#thread-close")
        alice.click("#group-button")
        alice.text_in("#group-members", "bob")
        alice.type("#rename-group-input", "Weekend picnic")
        alice.click("#rename-group-form button")
        bob.text_in("#conversation-title", "Weekend picnic")
        alice.text_in("#conversation-title", "Weekend picnic")
        alice.shot("group.png")

        # Bob mentions Alice (typing "@al" offers her) while she is in another chat: her
        # chat list shows the @ badge; opening the group shows it highlighted and clears it.
        alice.click(f'[data-key="{bob_chat}"]')
        bob.type("#composer-input", "@al")
        bob.text_in("#mention-list [role=option]", "Alice Liddell")
        bob.find("#composer-input").send_keys(Keys.ENTER)
        bob.until(lambda: bob.find("#composer-input").get_attribute("value") == "@alice ", "the mention picked")
        bob.find("#composer-input").send_keys("can you bring the blanket?", Keys.ENTER)
        bob.text_in(".message.mine .text", "bring the blanket")
        alice.text_in(f'[data-key="{group}"] .badge.mention', "@")
        alice.click(f'[data-key="{group}"]')
        alice.text_in(".message.mentions-me .mention", "@alice")
        alice.gone(f'[data-key="{group}"] .badge', "the unread and mention badges to go")
        alice.shot("mention.png")

        # Bob drops off the network while Alice writes to him: back online, the
        # client reconnects and `sync` brings the message (his view of that chat
        # is already loaded, so nothing else would fetch it).
        bob.network(online=False)
        bob.text_in("#connection", "Offline")
        alice.click(f'[data-key="{bob_chat}"]')
        alice.send("Are you there?")
        bob.network(online=True)
        bob.text_in("#connection", "Online")
        bob.text_in(f'[data-key="{alice_chat}"] .chat-last', "Are you there?")
        bob.click(f'[data-key="{alice_chat}"]')
        bob.text_in(".message .text", "Are you there?")

        # Bob reloads: still logged in, the same conversation open, the group still there.
        bob.driver.refresh()
        bob.text_in("#connection", "Online")
        bob.text_in("#conversation-title", "Alice Liddell")
        bob.text_in(".message .text", "Are you there?")
        bob.until(lambda: bob.image_loaded(".message img.preview"), "the image after a reload")
        bob.click(f'[data-key="{group}"]')
        bob.text_in(".message .text", "Count me in")

        # A phone-sized window shows one column: the open chat, with a way back.
        bob.driver.set_window_size(390, 760)
        bob.visible("#back-button")
        self.assertFalse(bob.find("#sidebar").is_displayed())
        bob.shot("phone.png")
        bob.click("#back-button")
        bob.visible("#chat-list")
        bob.driver.set_window_size(1000, 700)

        # Alice blocks Bob, then lifts the block: they are strangers. She asks again, he
        # accepts; then Bob removes her and both contact lists lose the other.
        alice.click(f'[data-focus="block{bob_id}"]')
        alice.accept_confirmation()
        alice.text_in(f'#contact-list [data-user="{bob_id}"] .contact-status', "blocked")
        alice.click(f'[data-focus="unblock{bob_id}"]')
        alice.gone(f'#contact-list [data-user="{bob_id}"]', "Bob to leave Alice's contacts")
        alice.type("#add-contact-username", "bob")
        alice.click("#add-contact-form button")
        alice.text_in(f'#contact-list [data-user="{bob_id}"]', "request sent")
        bob.text_in(f'#contact-list [data-user="{alice_id}"]', "wants to be your contact")
        bob.click(f'[data-focus="accept{alice_id}"]')
        alice.visible(f'[data-focus="removecontact{bob_id}"]')
        bob.click(f'[data-focus="removecontact{alice_id}"]')
        bob.accept_confirmation()
        bob.gone(f'#contact-list [data-user="{alice_id}"]', "Alice to leave Bob's contacts")
        alice.gone(f'#contact-list [data-user="{bob_id}"]', "Bob to leave Alice's contacts")

        # Alice reports Bob's message in the group; nobody is an administrator yet, so nobody has Reports.
        alice.click(f'[data-key="{group}"]')
        reported = alice.text_in(".message:not(.mine)", "Count me in")
        reported.find_element(By.CSS_SELECTOR, '[data-action="report"]').click()
        alice.visible("#report-dialog")
        alice.text_in("#report-quote", "Count me in")
        Select(alice.find("#report-category")).select_by_value("harassment")
        alice.type("#report-reason", "rude to the group")
        alice.click("#report-send")
        alice.until(lambda: not alice.find("#report-dialog").is_displayed(), "the report dialog to close")
        self.assertFalse(alice.find("#reports-button").is_displayed())
        made = subprocess.run(
            [sys.executable, "-c", "from umoc.admincli import main; main()", "--config", self.config,
             "--data-dir", self.data_dir, "set-admin", "alice"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        self.assertEqual(made.returncode, 0, made.stderr)
        # An administrator now, Alice finds the report and bans Bob from the group with it.
        alice.driver.refresh()
        alice.visible("#reports-button")  # once her own profile says is_admin
        alice.click("#reports-button")
        report = alice.text_in("#reports-list .report", "Count me in")
        alice.text_in("#reports-list .report", "rude to the group")
        alice.text_in("#reports-list .report .tag", "harassment")
        report.find_element(By.CSS_SELECTOR, '[data-resolve="ban_member"]').click()
        alice.accept_confirmation()
        alice.text_in("#reports-status", "No open reports")
        bob.gone(f'[data-key="{group}"]', "the group to leave Bob's chats once he is banned")
        alice.click("#reports-close")

    def _community(self, alice: Browser, bob: Browser) -> None:
        """Issue 29 in the browser: the directory, joining, roles, mutes, bans and invite links."""
        alice.register("alice")
        bob.register("bob")
        # Alice creates a public group anyone may join, with a topic.
        alice.click("#new-group summary")
        alice.type("#new-group-name", "Book club")
        alice.type("#new-group-topic", "One novel a month")
        Select(alice.find("#new-group-visibility")).select_by_value("public")
        Select(alice.find("#new-group-join-rule")).select_by_value("open")
        alice.click("#new-group-form button[type=submit]")
        alice.text_in("#conversation-title", "Book club")
        group = alice.attribute(".chat-item.current", "data-key")
        gid = group[1:]

        # Bob finds it in the directory (no friendship needed) and joins.
        bob.click("#directory summary")
        bob.type("#directory-query", "book")
        bob.click("#directory-form button")
        bob.text_in("#directory-list .directory-item", "One novel a month")
        bob.click(f'[data-focus="join{gid}"]')
        bob.text_in("#conversation-title", "Book club")
        bob.send("Hello readers")
        alice.text_in(f'[data-key="{group}"] .chat-last', "Hello readers")
        bob_id = bob.attribute("#chat-list .chat-item.current", "data-key")  # the group: find Bob's id below
        self.assertEqual(bob_id, group)

        # Alice opens the settings: Bob is a member; she makes him a moderator.
        alice.click("#group-button")
        row = alice.text_in("#group-members .member", "bob")
        bob_user = row.get_attribute("data-user")
        Select(alice.find(f"#role{bob_user}")).select_by_value("moderator")
        alice.text_in(f'#group-members [data-user="{bob_user}"] .tag', "moderator")
        bob.text_in("#announce", "You are now moderator")
        alice.shot("group-roles.png")

        # A picture for the group: Bob's chat list shows it.
        picture = os.path.join(tempfile.mkdtemp(), "club.png")
        with open(picture, "wb") as f:
            f.write(png(96, 96))
        alice.find("#group-avatar-input").send_keys(picture)
        bob.until(lambda: bob.image_loaded(f'[data-key="{group}"] .avatar img'), "the group's picture in Bob's chats")

        # A mute greys out Bob's composer; lifted, he writes again.
        alice.click(f'[data-focus="mute{bob_user}"]')
        bob.until(lambda: not bob.find("#composer-input").is_enabled(), "Bob's composer to be disabled by the mute")
        self.assertIn("muted", bob.find("#composer-input").get_attribute("placeholder"))
        alice.click(f'[data-focus="unmute{bob_user}"]')
        bob.until(lambda: bob.find("#composer-input").is_enabled(), "Bob's composer back after the unmute")

        # An invite link: shown once, listed, revoked.
        alice.click("#invite-create-form button")
        code = alice.visible("#invite-new .invite-code").text
        self.assertGreaterEqual(len(code), 32)
        alice.text_in("#group-invites .member", code[:6])
        alice.click("#group-invites button")
        alice.gone("#group-invites .member", "the revoked link to leave the list")

        # A ban: Bob is out, listed among the banned, cannot join until the ban is lifted.
        alice.click(f'[data-focus="ban{bob_user}"]')
        alice.accept_confirmation()
        bob.gone(f'#chat-list [data-key="{group}"]', "the group to leave Bob's chats")
        alice.text_in("#group-bans .member", "bob")
        bob.click("#directory-form button")
        bob.click(f'[data-focus="join{gid}"]')
        bob.text_in("#toast", "You are banned from this group")
        alice.click(f'[data-focus="unban{bob_user}"]')
        alice.gone("#group-bans .member", "the lifted ban to leave the list")

        # A fresh invite code brings Bob back in.
        alice.click("#invite-create-form button")
        old = code
        code = alice.until(
            lambda: (
                (alice.find("#invite-new .invite-code").text or None)
                if alice.find("#invite-new .invite-code").text != old
                else None
            ),
            "the new invite code",
        )
        bob.type("#invite-join-code", code)
        bob.click("#invite-join-form button")
        bob.text_in("#conversation-title", "Book club")
        alice.text_in("#group-members .member", "bob")
