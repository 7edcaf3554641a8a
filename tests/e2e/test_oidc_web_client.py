"""The web client's "Sign in with ..." in headless Chromium, against oidc-provider (a real OpenID provider).

The server runs in this process (port 0) with ``auth.oidc`` naming the
provider that tests/js/oidc_provider.mjs starts; Chromium resolves the
public name ``umoc.test`` (the registered redirect URL's host) to the
server's port (``--host-resolver-rules``), so the page, its socket and the
callback all live at ``http://umoc.test``, as behind a proxy.  Selenium
blocks, so the browser is driven from a thread while the reactor serves.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import threads

from tests.e2e.test_oidc_provider import PUBLIC, RealProviderCase
from tests.e2e.test_web_client import Browser, _missing
from tests.support.deferreds import inline


class OidcWebClientTests(RealProviderCase):
    # Only a guard against a hung browser: two Chromiums on a loaded machine took 155 s of the 180 once.
    timeout = 600
    skip = RealProviderCase.skip or _missing()

    @inline
    async def test_sign_in_with_the_provider_cancel_then_sign_in_and_chat_online(self) -> None:
        # umoc.test is the server; no other name resolves (the provider's pages ask for web fonts: no internet).
        rules = f"--host-resolver-rules=MAP umoc.test 127.0.0.1:{self.server.port}, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
        await threads.deferToThread(self.story, Browser(PUBLIC + "/", "olive", rules))

    def story(self, browser: Browser) -> None:
        try:
            self._story(browser)
        except Exception:
            browser.driver.save_screenshot("oidc-web-client-failure.png")
            raise
        finally:
            browser.quit()

    def _story(self, browser: Browser) -> None:
        driver: Any = browser.driver
        driver.get(browser.url)
        button = browser.visible("#oidc-button")
        self.assertEqual(button.text, "Sign in with 127.0.0.1")
        # Cancel at the provider's login page: back on UMOC's login page with the provider's answer.
        button.click()
        browser.visible("input[name=login]")
        self.assertTrue(driver.current_url.startswith(self.op.issuer + "/interaction/"), driver.current_url)
        browser.click("a[href$='/abort']")
        browser.text_in("#login-error", "The sign-in provider answered: access_denied")
        self.assertEqual(driver.current_url, PUBLIC + "/")
        # Now sign in: the login form, the consent form, and back to the web client, signed in and online.
        browser.click("#oidc-button")
        browser.type("input[name=login]", "olive")
        browser.type("input[name=password]", "any password")
        browser.click("button.login-submit")
        browser.text_in("button.login-submit", "Continue")
        browser.click("button.login-submit")
        browser.text_in("#me", "olive")
        browser.text_in("#connection", "Online")
        # The session left the address bar at once, and stays across a reload.
        self.assertEqual(driver.current_url, PUBLIC + "/")
        self.assertNotIn("oidc", driver.execute_script("return window.location.hash"))
        driver.refresh()
        browser.text_in("#connection", "Online")
        # The web client's console is clean (the provider's pages miss their fonts and favicon).
        self.assertEqual([e for e in browser.errors() if e.startswith(PUBLIC)], [])
