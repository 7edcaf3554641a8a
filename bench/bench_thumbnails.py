"""Does thumbnailing 12-megapixel photos delay other users' acks? (issue 32)

    python bench/bench_thumbnails.py [--pairs 4] [--rate 20] [--seconds 20] [--uploaders 1] [--rounds 1]

Starts ``twistd umoc`` in a subprocess (SQLite, a temporary data dir, rate
limits off), then:

- ``--pairs`` pairs of friends; in each the first sends ``send_message`` to
  the second at a steady ``--rate`` per second (open loop: a late ack does
  not delay the next send), and every ack's round trip is recorded;
- ``--uploaders`` other users, each in its own process (so their Pillow and
  HTTP work does not share the measuring process's GIL), each with a friend
  to share photos with.  Before anything is measured each makes two
  4000x3000 JPEGs with Pillow (gradients under noise: about 5 MB each, like
  a phone's photo, not a flat image that compresses to nothing);

then for each of ``--rounds`` rounds measures ``--seconds`` of the pairs
alone ("quiet") and ``--seconds`` while the uploaders, back to back,
``upload_file_prepare``, ``PUT`` a photo and ``upload_file_complete`` it
(whose ack waits for its two thumbnails to be made).  Acks are reported
for the quiet phase, for the whole upload phase, and for the sends made
while some ``upload_file_complete`` was in flight (the thumbnailing
itself).  The target: p99 under 50 ms while thumbnailing.  ``--control``
shares the same bytes as ``application/octet-stream`` (no thumbnails): the
difference between the two runs is what thumbnailing costs the others.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 50.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = data_dir / "umoc.yaml"
    # JSON is YAML.  Link previews off: no message here has a link, and nothing should reach out.
    config.write_text(json.dumps({"ratelimits": {"enabled": False}, "messages": {"link_previews": False}}))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twisted",
            "--log-file",
            str(data_dir / "umoc.log"),
            "umoc",
            "--config",
            str(config),
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return process, url
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the server did not start; see {data_dir / 'umoc.log'}")


class Person:
    """A registered, logged-in user with a connected python-socketio client."""

    def __init__(self, url: str, name: str) -> None:
        import socketio

        password = "bench password " + name
        post(url, "/api/register", {"username": name, "password": password})
        self.login = post(url, "/api/login", {"username": name, "password": password})
        self.id = int(self.login["user_id"])
        self.sio = socketio.Client(reconnection=False, request_timeout=120)
        self.sio.connect(
            f"{url}/?sessionID={self.login['sessionID']}&token={self.login['token']}",
            transports=["websocket"],
            wait_timeout=10,
        )

    def call(self, event: str, **payload: Any) -> Any:
        answer = self.sio.call(event, {"sessionID": self.login["sessionID"], **payload}, timeout=120)
        if isinstance(answer, dict) and "error" in answer:
            raise RuntimeError(f"{event}: {answer['error']}")
        return answer


def befriend(a: Person, b: Person, b_name: str) -> None:
    a.call("add_contact", contact_username=b_name)
    b.call("accept_contact", contact_id=a.id)


# -- the photos and their uploader ------------------------------------------------------


def photo(width: int, height: int) -> bytes:
    """A JPEG (quality 90) of gradients under noise: detail everywhere, like a photo, about 5 MB at 12 MP."""
    from PIL import Image

    size = (width, height)
    gradient = Image.linear_gradient("L").resize(size)
    base = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(180)))
    noise = Image.frombytes("RGB", size, os.urandom(width * height * 3))
    out = io.BytesIO()
    Image.blend(base, noise, 0.3).save(out, "JPEG", quality=90)
    return out.getvalue()


def put(url: str, ready: dict[str, Any], data: bytes) -> None:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request(
            "PUT",
            ready["upload_url"],
            body=data,
            headers={"Authorization": f"Bearer {ready['upload_token']}", "Content-Type": "image/jpeg"},
        )
        response = conn.getresponse()
        body = response.read()
        if response.status != 201:
            raise RuntimeError(f"PUT answered {response.status}: {body!r}")
    finally:
        conn.close()


def uploader(
    url: str, tag: str, index: int, size: tuple[int, int], file_type: str, ready: Any, go: Any, stop: Any, out: Any
) -> None:
    """Another process: make the photos, then upload and complete them back to back between go and stop."""
    photos = [photo(*size), photo(*size)]
    me, friend = Person(url, f"up{index}_{tag}"), Person(url, f"upfriend{index}_{tag}")
    befriend(me, friend, f"upfriend{index}_{tag}")
    ready.release()
    records: list[tuple[float, float, float, int]] = []
    while True:
        go.wait()
        if stop.is_set():
            break
        while go.is_set() and not stop.is_set():
            data = photos[len(records) % 2]
            started = time.monotonic()
            prepared = me.call(
                "upload_file_prepare",
                recipient_id=friend.id,
                is_group=False,
                file_name="photo.jpg",
                file_size=len(data),
                file_type=file_type,
            )
            put(url, prepared, data)
            completing = time.monotonic()
            message = me.call(
                "upload_file_complete",
                file_id=prepared["file_id"],
                recipient_id=friend.id,
                is_group=False,
                file_name="photo.jpg",
                file_type=file_type,
            )
            if ("thumbnail_url" in json.loads(message["content"])) != (file_type == "image/jpeg"):
                raise RuntimeError("a photo got no thumbnail, or a file got one")
            records.append((started, completing, time.monotonic(), len(data)))
        out.put(records)
        records = []
    me.sio.disconnect()
    friend.sio.disconnect()


# -- the pairs ------------------------------------------------------------------------------


class Sender:
    """Sends to its friend at a steady rate from its own thread; records (sent at, round trip)."""

    def __init__(self, me: Person, friend: Person, rate: float) -> None:
        self.me, self.friend, self.interval = me, friend, 1.0 / rate
        self.acks: list[tuple[float, float]] = []
        self.lost = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        session = self.me.login["sessionID"]
        due = time.monotonic()
        count = 0
        while not self._stop.is_set():
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent = time.monotonic()
            count += 1

            def acked(*answer: Any, sent: float = sent) -> None:
                took = time.monotonic() - sent
                with self._lock:
                    if answer and isinstance(answer[0], dict) and "error" in answer[0]:
                        self.lost += 1
                    else:
                        self.acks.append((sent, took))

            self.me.sio.emit(
                "send_message",
                {"sessionID": session, "recipient_id": self.friend.id, "content": f"steady message {count}"},
                callback=acked,
            )
            due += self.interval

    def between(self, start: float, end: float) -> list[tuple[float, float]]:
        with self._lock:
            return [(sent, took) for sent, took in self.acks if start <= sent < end]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def line(label: str, rtts: list[float]) -> str:
    if not rtts:
        return f"  {label:<32} no acks"
    ms = [value * 1000 for value in rtts]
    return (
        f"  {label:<32} n={len(ms):5d}  p50 {percentile(ms, 0.5):7.2f}  p99 {percentile(ms, 0.99):7.2f}"
        f"  max {max(ms):7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4, help="pairs of friends sending steadily")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second per sender")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--uploaders", type=int, default=1, help="users uploading photos back to back")
    parser.add_argument("--rounds", type=int, default=1, help="quiet then uploading, this many times")
    parser.add_argument(
        "--control",
        action="store_true",
        help="share the same bytes as application/octet-stream: the upload without its thumbnails",
    )
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:6]
    file_type = "application/octet-stream" if args.control else "image/jpeg"
    with tempfile.TemporaryDirectory(prefix="umoc-bench-thumbs-") as tmp:
        # The uploaders fork before this process starts any client thread.
        context = multiprocessing.get_context("spawn")
        ready, go, stop = context.Semaphore(0), context.Event(), context.Event()
        results: Any = context.Queue()
        server, url = start_server(Path(tmp))
        uploaders = [
            context.Process(
                target=uploader,
                args=(url, tag, index, (args.width, args.height), file_type, ready, go, stop, results),
            )
            for index in range(args.uploaders)
        ]
        senders: list[Sender] = []
        people: list[Person] = []
        try:
            for process in uploaders:
                process.start()
            for index in range(args.pairs):
                a, b = Person(url, f"a{index}_{tag}"), Person(url, f"b{index}_{tag}")
                befriend(a, b, f"b{index}_{tag}")
                people += [a, b]
                senders.append(Sender(a, b, args.rate))
            for _ in uploaders:
                if not ready.acquire(timeout=120):
                    raise SystemExit("an uploader did not get ready")
            for sender in senders:
                sender.start()
            time.sleep(3)  # warm up
            quiet: list[tuple[float, float]] = []
            busy: list[tuple[float, float]] = []
            uploads: list[tuple[float, float, float, int]] = []
            for _ in range(args.rounds):
                quiet.append((time.monotonic(), time.monotonic() + args.seconds))
                time.sleep(args.seconds)
                start = time.monotonic()
                go.set()
                time.sleep(args.seconds)
                go.clear()
                busy.append((start, time.monotonic()))
                for _ in uploaders:
                    uploads += results.get(timeout=300)
                time.sleep(1)  # the last acks of the phase arrive
            for sender in senders:
                sender.stop()
            time.sleep(1)
            stop.set()
            go.set()
            for process in uploaders:
                process.join(60)
        finally:
            for person in people:
                person.sio.disconnect()
            for process in uploaders:
                if process.is_alive():
                    process.kill()
            server.terminate()
            server.wait(10)

    def rtts(windows: list[tuple[float, float]], only_thumbnailing: bool = False) -> list[float]:
        found = []
        for start, end in windows:
            for sender in senders:
                for sent, took in sender.between(start, end):
                    if not only_thumbnailing or any(c <= sent < done for _, c, done, _ in uploads):
                        found.append(took)
        return found

    megapixels = args.width * args.height / 1e6
    print(
        f"{args.pairs} pairs at {args.rate:g} messages/s each; {args.uploaders} uploader(s) of "
        f"{megapixels:.0f} MP JPEGs{' shared as plain files (control)' if args.control else ''}; "
        f"{args.rounds} round(s) of {args.seconds:g} s per phase"
    )
    if uploads:
        sizes = sum(size for *_, size in uploads) / len(uploads) / 1e6
        puts = sorted(completing - started for started, completing, _, _ in uploads)
        completes = sorted(done - completing for _, completing, done, _ in uploads)
        print(
            f"  photos: {len(uploads)} of {sizes:.1f} MB; PUT median {percentile(puts, 0.5) * 1000:.0f} ms; "
            f"upload_file_complete median {percentile(completes, 0.5) * 1000:.0f} ms, "
            f"max {completes[-1] * 1000:.0f} ms"
        )
    print("send_message acks (round trip, ms):")
    print(line("quiet", rtts(quiet)))
    print(line("while uploading", rtts(busy)))
    thumbnailing = rtts(busy, only_thumbnailing=True)
    print(line("while completing" if args.control else "while thumbnailing", thumbnailing))
    lost = sum(sender.lost for sender in senders)
    if lost:
        print(f"  {lost} sends answered with an error")
    if thumbnailing and not args.control:
        p99 = percentile([value * 1000 for value in thumbnailing], 0.99)
        verdict = "met" if p99 < TARGET_P99_MS else "NOT met"
        print(f"target p99 < {TARGET_P99_MS:g} ms while thumbnailing: {verdict} ({p99:.2f} ms)")


if __name__ == "__main__":
    main()
