"""A small, independent convene client on aiortc.

It speaks only what docs/protocol.md and the README document: the REST API
(`/v1/auth/*`, `/v1/teams*`, `/v1/conferences/*`) and the JSON signaling over
the WebSocket from `signaling_url`. Media is one aiortc RTCPeerConnection per
participant publishing synthetic audio and video; what arrives is decoded by
aiortc and checked against the publisher's signature (a flat luma level for
video, a tone for audio), so a frame only counts when it really is the other
participant's media.

Everything stays on loopback: aioice's host candidates are limited to
127.0.0.1 and no STUN/TURN server from `ice_servers` is used.
"""

from __future__ import annotations

import array
import asyncio
import fractions
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import aioice.ice
import av
import websockets
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.rtcconfiguration import RTCBundlePolicy
from websockets.asyncio.client import connect as ws_connect

# Loopback only: the SFU under test listens on 127.0.0.1, and nothing of
# this test should leave the machine.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

WIDTH, HEIGHT = 320, 240
SAMPLE_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms
TONE_HZ = 400  # 120 samples a period, 8 periods in 20 ms
SDP_LOG = bool(os.environ.get("CONVENE_AIORTC_LOG_SDP"))


def log(*parts: Any) -> None:
    print(f"[{time.monotonic():10.3f}]", *parts, file=sys.stderr, flush=True)


class Failure(Exception):
    """A scenario's expectation that did not hold."""


# --------------------------------------------------------------------------
# REST


class Api:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        # Never a proxy from the environment: the server is on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, token: str | None, body: Any) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        try:
            with self._opener.open(req, timeout=10) as res:
                raw = res.read()
                return res.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw) if raw else None
            except ValueError:
                return e.code, raw.decode(errors="replace")

    async def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        status, res = await asyncio.to_thread(self._call, method, path, token, body)
        if not 200 <= status < 300:
            raise Failure(f"{method} {path}: HTTP {status} {res}")
        return res

    async def user(self, name: str) -> dict:
        """Registers and logs in; returns the login answer (access_token, user)."""
        await self.call(
            "POST",
            "/v1/auth/register",
            body={"username": name, "email": f"{name}@example.org", "password": "correct horse"},
        )
        login = await self.call(
            "POST", "/v1/auth/login", body={"login": name, "password": "correct horse"}
        )
        me = await self.call("GET", "/v1/users/me", login["access_token"])
        login["user_id"] = me["id"]
        return login

    async def team_with(self, owner: dict, member: dict) -> str:
        """README's flow: a team, its join code used by `member`, the request accepted."""
        team = await self.call(
            "POST", "/v1/teams", owner["access_token"], {"name": "crew", "description": ""}
        )
        req = await self.call(
            "POST", "/v1/teams/join", member["access_token"], {"code": team["join_code"]}
        )
        await self.call(
            "POST",
            f"/v1/teams/{team['id']}/requests/{req['request']['id']}/accept",
            owner["access_token"],
        )
        return team["id"]

    async def conference(self, owner: dict, team_id: str, waiting_hall: bool = True) -> str:
        conf = await self.call(
            "POST",
            f"/v1/teams/{team_id}/conferences",
            owner["access_token"],
            {"title": "aiortc", "starts_at": "2026-11-24T10:00:00Z", "waiting_hall": waiting_hall},
        )
        return conf["id"]

    async def join(self, who: dict, conf_id: str) -> dict:
        return await self.call("POST", f"/v1/conferences/{conf_id}/join", who["access_token"])


# --------------------------------------------------------------------------
# Synthetic media with a signature


class PatternVideo(VideoStreamTrack):
    """320x240 at 30 fps: flat luma `level` in the top half, a moving bar below."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        y = frame.planes[0]
        stride = y.line_size
        flat = bytes([self.level]) * stride
        bar_x = (self.n * 4) % (WIDTH - 32)
        row = bytearray(flat)
        row[bar_x : bar_x + 32] = bytes([255 - self.level]) * 32
        top = HEIGHT // 2
        buf = flat * top + bytes(row) * (HEIGHT - top)
        y.update(buf + bytes(y.buffer_size - len(buf)))
        for p in frame.planes[1:]:
            p.update(b"\x80" * p.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        self.n += 1
        return frame


class ToneAudio(MediaStreamTrack):
    """A 400 Hz tone, 48 kHz mono, 20 ms frames."""

    kind = "audio"

    def __init__(self, amplitude: int = 8000):
        super().__init__()
        period = SAMPLE_RATE // TONE_HZ
        one = [int(amplitude * math.sin(2 * math.pi * i / period)) for i in range(period)]
        self.buf = array.array("h", one * (AUDIO_SAMPLES // period)).tobytes()
        self._start: float | None = None
        self._ts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            self._ts += AUDIO_SAMPLES
            await asyncio.sleep(self._start + self._ts / SAMPLE_RATE - time.time())
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self.buf)
        frame.pts = self._ts
        frame.sample_rate = SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        return frame


def top_luma(frame: av.VideoFrame) -> float:
    """Mean luma of the top half's middle rows (the publisher's flat level)."""
    y = frame.planes[0]
    stride = y.line_size
    data = bytes(y)
    rows = range(frame.height // 8, frame.height * 3 // 8, 4)
    total = count = 0
    for r in rows:
        line = data[r * stride + 8 : r * stride + frame.width - 8]
        total += sum(line)
        count += len(line)
    return total / max(count, 1)


def rms(frame: av.AudioFrame) -> float:
    if frame.format.name != "s16":
        return -1.0
    samples = array.array("h", bytes(frame.planes[0]))
    if not samples:
        return 0.0
    return math.sqrt(sum(s * s for s in samples[::4]) / len(samples[::4]))


class Received:
    """What one participant decoded from one publisher."""

    def __init__(self, expected_level: int):
        self.expected_level = expected_level
        self.video = 0
        self.video_ok = 0  # frames checked whose luma matched the publisher
        self.video_checked = 0
        self.video_bad: list[float] = []
        self.sizes: set[tuple[int, int]] = set()
        self.audio = 0
        self.audio_loud = 0
        self.audio_checked = 0
        self.first_video: float | None = None
        self.first_audio: float | None = None

    def on_video(self, frame: av.VideoFrame) -> None:
        self.video += 1
        if self.first_video is None:
            self.first_video = time.monotonic()
        self.sizes.add((frame.width, frame.height))
        if self.video <= 10 or self.video % 5 == 0:
            level = top_luma(frame)
            self.video_checked += 1
            if abs(level - self.expected_level) <= 16:
                self.video_ok += 1
            elif len(self.video_bad) < 5:
                self.video_bad.append(round(level, 1))

    def on_audio(self, frame: av.AudioFrame) -> None:
        self.audio += 1
        if self.first_audio is None:
            self.first_audio = time.monotonic()
        if self.audio % 5 == 0:
            self.audio_checked += 1
            if rms(frame) > 1000:
                self.audio_loud += 1

    def summary(self, since: float | None = None) -> dict:
        def ms(t: float | None) -> int | None:
            return None if t is None or since is None else round((t - since) * 1000)

        return {
            "video_frames": self.video,
            "video_matching": f"{self.video_ok}/{self.video_checked}",
            "video_bad_levels": self.video_bad,
            "sizes": sorted(self.sizes),
            "audio_frames": self.audio,
            "audio_loud": f"{self.audio_loud}/{self.audio_checked}",
            "first_video_ms": ms(self.first_video),
            "first_audio_ms": ms(self.first_audio),
        }

    def good(self, min_video: int, min_audio: int) -> bool:
        return (
            self.video >= min_video
            and self.video_checked > 0
            and self.video_ok >= 0.9 * self.video_checked
            and self.audio >= min_audio
            and self.audio_checked > 0
            and self.audio_loud >= 0.8 * self.audio_checked
        )


# --------------------------------------------------------------------------
# Signaling + media for one participant


class Participant:
    """One user: its REST login, a signaling socket and an RTCPeerConnection."""

    def __init__(self, name: str, login: dict, level: int):
        self.name = name
        self.login = login
        self.user_id: str = login["user_id"]
        self.level = level
        self.ws: Any = None
        self.messages: list[dict] = []  # every frame received, in order, all sockets
        self.closes: list[tuple[int | None, str | None]] = []
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._negotiation = asyncio.Lock()
        self.pc: RTCPeerConnection | None = None
        self.participant_id: str | None = None
        self.resume_token: str | None = None
        self.room_token: str | None = None
        # publisher participant id -> what was decoded from it
        self.received: dict[str, Received] = {}
        self.levels: dict[str, int] = {}  # publisher participant id -> expected luma
        self.answers = 0
        self.server_offers = 0
        self.errors: list[str] = []
        self.msid_tracks: list[str | None] = []  # the msid track ids seen

    # ---- socket

    async def connect(self, url: str) -> None:
        # The server pings every 5 s; websockets answers by itself, which is
        # all the documented keep-alive needs.
        self.ws = await ws_connect(url, proxy=None, open_timeout=10, max_size=2**22)
        self._reader = asyncio.create_task(self._read(self.ws))

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                msg = json.loads(raw)
                log(self.name, "<-", _short(msg))
                if SDP_LOG and "sdp" in msg:
                    log(self.name, "sdp:\n" + msg["sdp"])
                async with self._changed:
                    self.messages.append(msg)
                    self._changed.notify_all()
                if msg.get("type") in ("offer", "answer"):
                    self._spawn(self._on_sdp(msg))
        except websockets.ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001 - reported, the scenario decides
            self.errors.append(f"reader: {e!r}")
        finally:
            rcvd = ws.close_code, ws.close_reason
            log(self.name, "socket closed", rcvd)
            async with self._changed:
                self.closes.append(rcvd)
                self._changed.notify_all()

    async def send(self, msg: dict) -> None:
        log(self.name, "->", _short(msg))
        await self.ws.send(json.dumps(msg))

    def drop_socket(self) -> None:
        """Breaks the TCP connection without a close frame."""
        self.ws.transport.abort()

    async def wait_for(
        self, pred: Callable[[dict], bool], timeout: float, what: str, start: int = 0
    ) -> dict:
        """The first message from index `start` on that matches, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                for m in self.messages[start:]:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"{self.name}: no {what} within {timeout}s; got {self.types()}")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    pass

    async def wait_type(self, type_: str, timeout: float, start: int = 0) -> dict:
        return await self.wait_for(lambda m: m.get("type") == type_, timeout, type_, start)

    async def wait_closed(self, count: int, timeout: float) -> tuple[int | None, str | None]:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while len(self.closes) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Failure(f"{self.name}: socket still open after {timeout}s")
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except asyncio.TimeoutError:
                    pass
            return self.closes[count - 1]

    def types(self, start: int = 0) -> list[str]:
        return [m.get("type", "?") for m in self.messages[start:]]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- joining

    async def join(self, token: str, resume_token: str | None = None) -> dict:
        """Sends `join`; returns the answer (`joined`, `waiting` or `error`)."""
        start = len(self.messages)
        msg = {"type": "join", "token": token}
        if resume_token:
            msg["resume_token"] = resume_token
        await self.send(msg)
        answer = await self.wait_for(
            lambda m: m.get("type") in ("joined", "waiting", "error"), 10, "join answer", start
        )
        if answer["type"] == "joined":
            self.on_joined(answer, token)
        return answer

    def on_joined(self, joined: dict, token: str) -> None:
        self.participant_id = joined["participant_id"]
        self.resume_token = joined["resume_token"]
        self.room_token = token

    # ---- media

    def new_pc(self) -> None:
        # No ice_servers: loopback only, and an ICE-lite SFU needs none.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pc.addTransceiver(ToneAudio(), direction="sendonly")
        pc.addTransceiver(PatternVideo(self.level), direction="sendonly")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._spawn(self._consume(pc, track))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            log(self.name, "pc", pc.connectionState)

        self.pc = pc

    async def offer(self) -> None:
        """Creates and sends an offer (the client offers first)."""
        async with self._negotiation:
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)
            sdp = self.pc.localDescription.sdp
            if "a=candidate:" not in sdp:
                raise Failure(f"{self.name}: aiortc offered no candidate")
            await self.send({"type": "offer", "sdp": sdp})

    async def _on_sdp(self, msg: dict) -> None:
        pc = self.pc
        if pc is None:
            self.errors.append(f"{msg['type']} before any RTCPeerConnection")
            return
        try:
            async with self._negotiation:
                if msg["type"] == "answer":
                    if pc.signalingState != "have-local-offer":
                        self.errors.append(f"answer in state {pc.signalingState}")
                        return
                    check_answer(msg["sdp"])
                    await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
                    self.answers += 1
                else:
                    if pc.signalingState == "have-local-offer":
                        # Glare: the client is impolite, the server re-offers.
                        log(self.name, "ignoring server offer in have-local-offer")
                        return
                    self.server_offers += 1
                    await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                    answer = await pc.createAnswer()
                    await pc.setLocalDescription(answer)
                    await self.send({"type": "answer", "sdp": pc.localDescription.sdp})
        except Failure as e:
            self.errors.append(str(e))
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{msg['type']}: {e!r}")
            log(self.name, "negotiation failed:", repr(e))

    async def _consume(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        # A server m-line carries a=msid:<participant_id> <track id>: the
        # stream id says whose media it is.
        mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None)
        stream_id, msid_track = msid_of(pc.remoteDescription.sdp, mid)
        publisher = stream_id or "?"
        self.msid_tracks.append(msid_track)
        rec = self.from_(publisher)
        log(self.name, "track", track.kind, "mid", mid, "msid", stream_id, msid_track)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if rec.expected_level < 0 and publisher in self.levels:
                rec.expected_level = self.levels[publisher]
            if track.kind == "video":
                rec.on_video(frame)
            else:
                rec.on_audio(frame)

    def from_(self, publisher: str) -> Received:
        return self.received.setdefault(publisher, Received(self.levels.get(publisher, -1000)))

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self.pc is not None:
            try:
                await asyncio.wait_for(self.pc.close(), 5)
            except Exception:  # noqa: BLE001
                pass
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 3)
            except Exception:  # noqa: BLE001
                pass
        if self._reader is not None:
            self._reader.cancel()


def msid_of(sdp: str, mid: str | None) -> tuple[str | None, str | None]:
    """The (stream id, track id) of the m-section with `mid`."""
    for section in sdp.split("\r\nm=")[1:]:
        lines = section.split("\r\n")
        if f"a=mid:{mid}" in lines:
            for line in lines:
                if line.startswith("a=msid:"):
                    bits = line[len("a=msid:") :].split()
                    return bits[0], bits[1] if len(bits) > 1 else None
    return None, None


def check_answer(sdp: str) -> None:
    """What docs/protocol.md promises of the SFU's answer."""
    sections = sdp.split("\r\nm=")[1:]
    for s in sections:
        kind = s.split(" ", 1)[0]
        if " 0 " in s.split("\r\n", 1)[0]:
            continue  # rejected m-line
        if "a=candidate:" not in s:
            raise Failure(f"answer: {kind} m-section without candidates")
        if "a=end-of-candidates" not in s:
            raise Failure(f"answer: {kind} m-section without a=end-of-candidates")
        if kind in ("audio", "video") and "a=recvonly" not in s and "a=inactive" not in s:
            raise Failure(f"answer: {kind} m-line is not recvonly")


def _short(msg: dict) -> str:
    out = {k: (v[:16] + "…" if isinstance(v, str) and len(v) > 40 else v) for k, v in msg.items()}
    return json.dumps(out)[:300]


async def until(pred: Callable[[], bool], timeout: float, what: str, detail: Callable[[], Any] = lambda: None) -> float:
    """Polls `pred` every 50 ms; returns when it holds, fails after `timeout`."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            raise Failure(f"{what} not within {timeout}s: {detail()}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start
