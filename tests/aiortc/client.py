"""Scenarios of an independent aiortc client against a running convene.

    python tests/aiortc/client.py --base http://127.0.0.1:PORT --scenario NAME

Prints one JSON line (`"ok": true|false` and figures) on stdout, a log on
stderr, and exits 0 only when every expectation of the scenario held. It
never runs longer than --deadline seconds (60 by default).

Scenarios:
  admit        ada (moderator) is in the room publishing; bob knocks, ada admits
               him over the socket; each decodes the other's audio and video.
  deny         ada denies bob: bob is told why, his socket is closed with 1000,
               an offer he sent while waiting got no answer, ada's room never
               has him.
  resume       after media flows bob's TCP connection breaks without a close
               frame; media keeps flowing; bob resumes with his room token and
               resume token, is the same participant, chat and media go on.
  new_session  bob closes his RTCPeerConnection; everyone gets media_ended for
               him; a new RTCPeerConnection and offer on the same socket bring
               media back both ways (the documented path after media_ended).

The ICE restart of docs/protocol.md (`iceRestart: true`) is not covered:
aiortc has no ICE restart (no restartIce, createOffer takes no options and its
ICE transport keeps its credentials for life).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import secrets
import sys
import time
from typing import Any, Awaitable, Callable

from convene_client import Api, Failure, Participant, log, until

ADA_LEVEL = 200  # luma of ada's video
BOB_LEVEL = 50
MIN_VIDEO = 30  # decoded frames of the other (1 s at 30 fps)
MIN_AUDIO = 25  # decoded 20 ms audio frames (0.5 s)
MEDIA_WITHIN = 30.0


class Ctx:
    def __init__(self, base: str, result: dict):
        self.api = Api(base)
        self.result = result
        self.people: list[Participant] = []

    async def person(self, name: str, level: int) -> Participant:
        login = await self.api.user(f"{name}{secrets.token_hex(4)}")
        p = Participant(name, login, level)
        self.people.append(p)
        return p


def own_tracks(p: Participant) -> set[str]:
    """The track ids the room announced as published by `p`."""
    return {
        m["track"]["track_id"]
        for m in p.messages
        if m.get("type") == "track_published" and m["track"]["participant_id"] == p.participant_id
    }


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


async def room_and_waiter(ctx: Ctx) -> tuple[Participant, Participant, str]:
    """README's flow; ada in the room publishing media, bob waiting at position 1."""
    ada = await ctx.person("ada", ADA_LEVEL)
    bob = await ctx.person("bob", BOB_LEVEL)
    team = await ctx.api.team_with(ada.login, bob.login)
    conf = await ctx.api.conference(ada.login, team, waiting_hall=True)

    a = await ctx.api.join(ada.login, conf)
    check(a["waiting"] is False, f"the moderator was put in the waiting hall: {a}")
    await ada.connect(a["signaling_url"])
    joined = await ada.join(a["token"])
    check(joined["type"] == "joined", f"ada's join answered {joined}")
    ada.new_pc()
    await ada.offer()
    await until(lambda: ada.answers >= 1, 10, "ada's answer", lambda: ada.errors)
    # Her tracks are published once her media arrives.
    await until(
        lambda: len(own_tracks(ada)) == 2, 15, "track_published for ada's audio and video",
        lambda: (ada.types(), ada.pc.connectionState),
    )

    b = await ctx.api.join(bob.login, conf)
    check(b["waiting"] is True, f"bob was not sent to the waiting hall: {b}")
    await bob.connect(b["signaling_url"])
    waiting = await bob.join(b["token"])
    check(waiting == {"type": "waiting", "position": 1}, f"bob's join answered {waiting}")
    await ada.wait_for(
        lambda m: m.get("type") == "waiting_updated"
        and any(e.get("user_id") == bob.user_id for e in m.get("entries", [])),
        10,
        "waiting_updated listing bob",
    )
    return ada, bob, b["signaling_url"]


async def admit(ctx: Ctx, ada: Participant, bob: Participant) -> float:
    """Ada admits bob; bob offers; returns the monotonic time of the admit."""
    mark = len(bob.messages)
    t0 = time.monotonic()
    await ada.send({"type": "admit", "user_id": bob.user_id})
    admitted = await bob.wait_type("admitted", 10, mark)
    t_admitted = time.monotonic()
    joined = await bob.wait_type("joined", 10, mark)
    t_joined = time.monotonic()
    bob.on_joined(joined, admitted["token"])
    check(
        any(p["participant_id"] == ada.participant_id and p["moderator"] for p in joined["participants"]),
        f"bob's joined does not list ada as moderator: {joined['participants']}",
    )
    ada_tracks = sorted(t["kind"] for t in joined["tracks"] if t["participant_id"] == ada.participant_id)
    check(ada_tracks == ["audio", "video"], f"bob's joined lists ada's tracks as {joined['tracks']}")
    ada.levels[bob.participant_id] = bob.level
    bob.levels[ada.participant_id] = ada.level
    bob.new_pc()
    await bob.offer()
    ctx.result["admit_to_admitted_ms"] = round((t_admitted - t0) * 1000)
    ctx.result["admit_to_joined_ms"] = round((t_joined - t0) * 1000)
    return t0


async def both_decode(ctx: Ctx, ada: Participant, bob: Participant, within: float, min_video: int, min_audio: int) -> float:
    a_from_b = ada.from_(bob.participant_id)
    b_from_a = bob.from_(ada.participant_id)
    return await until(
        lambda: a_from_b.good(min_video, min_audio) and b_from_a.good(min_video, min_audio),
        within,
        "each decoding the other's audio and video",
        lambda: {"ada_from_bob": a_from_b.summary(), "bob_from_ada": b_from_a.summary(),
                 "errors": ada.errors + bob.errors,
                 "pc": [ada.pc.connectionState, bob.pc.connectionState]},
    )


def no_foreign_media(p: Participant) -> None:
    """Nothing decoded was from someone it should not be from."""
    for pid, rec in p.received.items():
        check(rec.video_bad == [] or rec.video_ok >= 0.9 * rec.video_checked,
              f"{p.name} decoded video from {pid} with wrong levels {rec.video_bad}")


# --------------------------------------------------------------------------


async def scenario_admit(ctx: Ctx) -> None:
    ada, bob, _ = await room_and_waiter(ctx)
    t0 = await admit(ctx, ada, bob)
    await ada.wait_for(
        lambda m: m.get("type") == "participant_joined"
        and m["participant"]["participant_id"] == bob.participant_id
        and m["participant"]["moderator"] is False,
        10,
        "participant_joined for bob",
    )
    await both_decode(ctx, ada, bob, MEDIA_WITHIN, MIN_VIDEO, MIN_AUDIO)
    a, b = ada.from_(bob.participant_id), bob.from_(ada.participant_id)
    ctx.result["bob_from_ada"] = b.summary(t0)
    ctx.result["ada_from_bob"] = a.summary(t0)
    ctx.result["first_video_after_admit_ms"] = max(
        ctx.result["bob_from_ada"]["first_video_ms"], ctx.result["ada_from_bob"]["first_video_ms"]
    )
    check(b.sizes == {(320, 240)} and a.sizes == {(320, 240)}, f"decoded sizes {a.sizes} {b.sizes}")
    check(ada.server_offers >= 1 and bob.server_offers >= 1, "no server offer for the other's tracks")
    # docs/protocol.md says the msid track id is the convene track_id
    # (`{participant_id}/{mid}`); reported, not asserted: str0m keeps only
    # token characters, so the `/` is dropped.
    ctx.result["msid_track_ids"] = sorted(t for t in bob.msid_tracks if t)
    ctx.result["published_track_ids"] = sorted(own_tracks(ada))


async def scenario_deny(ctx: Ctx) -> None:
    ada, bob, _ = await room_and_waiter(ctx)
    # An offer from a waiter is a message in the wrong state: an error, no answer.
    mark = len(bob.messages)
    bob.new_pc()
    await bob.offer()
    err = await bob.wait_type("error", 10, mark)
    ctx.result["offer_while_waiting"] = err.get("code")

    mark_a = len(ada.messages)
    await ada.send({"type": "deny", "user_id": bob.user_id, "reason": "wrong meeting"})
    denied = await bob.wait_type("denied", 10, mark)
    check(denied.get("reason") == "wrong meeting", f"denied carries {denied}")
    code, _reason = await bob.wait_closed(1, 10)
    check(code == 1000, f"bob's socket closed with {code}, not 1000")
    await ada.wait_for(
        lambda m: m.get("type") == "waiting_updated"
        and not any(e.get("user_id") == bob.user_id for e in m.get("entries", [])),
        10,
        "waiting_updated without bob",
        mark_a,
    )
    # Ordered after everything the room did: a pong on ada's socket.
    mark_p = len(ada.messages)
    await ada.send({"type": "ping"})
    await ada.wait_type("pong", 10, mark_p)
    bad = {"joined", "admitted", "offer", "answer", "track_published"}
    check(not bad & set(bob.types()), f"denied bob got {bob.types()}")
    strangers = [
        m
        for m in ada.messages
        if m.get("type") == "participant_joined"
        or (m.get("type") == "track_published" and m["track"]["participant_id"] != ada.participant_id)
    ]
    check(not strangers, f"ada's room got {strangers}")
    check(bob.pc.remoteDescription is None and bob.pc.connectionState != "connected",
          f"bob's RTCPeerConnection is {bob.pc.connectionState}")
    check(not bob.received, f"bob decoded media: {list(bob.received)}")
    ctx.result["bob_messages"] = bob.types()


async def scenario_resume(ctx: Ctx) -> None:
    ada, bob, url = await room_and_waiter(ctx)
    await admit(ctx, ada, bob)
    await both_decode(ctx, ada, bob, MEDIA_WITHIN, 10, 10)
    a, b = ada.from_(bob.participant_id), bob.from_(ada.participant_id)
    pid, token, resume = bob.participant_id, bob.room_token, bob.resume_token
    mark_a = len(ada.messages)

    bob.drop_socket()
    code, _ = await bob.wait_closed(1, 5)
    ctx.result["dropped_close_code"] = code
    # The media session does not depend on the socket.
    va, vb = a.video, b.video
    gap = await until(lambda: a.video >= va + 15 and b.video >= vb + 15, 10,
                      "media while bob's socket is down", lambda: (a.summary(), b.summary()))
    ctx.result["media_while_dropped_ms"] = round(gap * 1000)

    t = time.monotonic()
    await bob.connect(url)
    joined = await bob.join(token, resume)
    ctx.result["resume_ms"] = round((time.monotonic() - t) * 1000)
    check(joined["type"] == "joined", f"resume answered {joined}")
    check(joined["participant_id"] == pid, f"resumed as {joined['participant_id']}, was {pid}")
    check(any(p["participant_id"] == ada.participant_id for p in joined["participants"]),
          f"resumed room lacks ada: {joined['participants']}")
    check(not any(m.get("type") == "media_ended" for m in bob.messages), "media_ended after resume")

    # Still the same participant for the room: chat both ways on the new socket.
    mark_b = len(bob.messages)
    await bob.send({"type": "chat", "text": "back"})
    chat = await ada.wait_for(lambda m: m.get("type") == "chat" and m.get("text") == "back", 10, "bob's chat", mark_a)
    check(chat["from"]["participant_id"] == pid, f"bob's chat came from {chat['from']}")
    await ada.send({"type": "chat", "text": "welcome back"})
    await bob.wait_for(lambda m: m.get("type") == "chat" and m.get("text") == "welcome back", 10, "ada's chat", mark_b)
    left = [m for m in ada.messages[mark_a:] if m.get("type") in ("participant_left", "participant_joined")]
    check(not left, f"ada saw {left} during the resume")

    va, vb = a.video, b.video
    await until(lambda: a.video >= va + MIN_VIDEO and b.video >= vb + MIN_VIDEO, 15,
                "media after the resume", lambda: (a.summary(), b.summary()))
    no_foreign_media(ada)
    no_foreign_media(bob)
    ctx.result["bob_from_ada"] = b.summary()
    ctx.result["ada_from_bob"] = a.summary()


async def scenario_new_session(ctx: Ctx) -> None:
    ada, bob, _ = await room_and_waiter(ctx)
    await admit(ctx, ada, bob)
    await both_decode(ctx, ada, bob, MEDIA_WITHIN, 10, 10)
    mark_a, mark_b = len(ada.messages), len(bob.messages)
    old = bob.pc
    t = time.monotonic()
    await asyncio.wait_for(old.close(), 5)

    def ended(m: dict) -> bool:
        return m.get("type") == "media_ended" and m.get("participant_id") == bob.participant_id

    e_bob = await bob.wait_for(ended, 25, "media_ended for bob", mark_b)
    e_ada = await ada.wait_for(ended, 25, "media_ended for bob at ada", mark_a)
    ctx.result["media_ended_ms"] = round((time.monotonic() - t) * 1000)
    ctx.result["media_ended_reason"] = e_bob["reason"]
    check(e_bob["reason"] == e_ada["reason"] == "peer_closed",
          f"media_ended reasons {e_bob['reason']} / {e_ada['reason']}, expected peer_closed")
    gone = {m["track_id"] for m in ada.messages[mark_a:] if m.get("type") == "track_unpublished"}
    check(len(gone) == 2 and all(tid.startswith(bob.participant_id + "/") for tid in gone),
          f"ada was told of unpublished tracks {gone}")

    # Fresh counters for the new session.
    ada.received.pop(bob.participant_id, None)
    bob.received.pop(ada.participant_id, None)
    t = time.monotonic()
    bob.new_pc()
    await bob.offer()
    await both_decode(ctx, ada, bob, MEDIA_WITHIN, MIN_VIDEO, MIN_AUDIO)
    ctx.result["media_back_ms"] = round((time.monotonic() - t) * 1000)
    ctx.result["bob_from_ada"] = bob.from_(ada.participant_id).summary(t)
    ctx.result["ada_from_bob"] = ada.from_(bob.participant_id).summary(t)


SCENARIOS: dict[str, Callable[[Ctx], Awaitable[None]]] = {
    "admit": scenario_admit,
    "deny": scenario_deny,
    "resume": scenario_resume,
    "new_session": scenario_new_session,
}


async def run(base: str, name: str, deadline: float) -> dict:
    result: dict[str, Any] = {"scenario": name, "ok": False}
    ctx = Ctx(base, result)
    t = time.monotonic()
    try:
        await asyncio.wait_for(SCENARIOS[name](ctx), deadline)
        errors = [f"{p.name}: {e}" for p in ctx.people for e in p.errors]
        if errors:
            raise Failure(f"negotiation errors: {errors}")
        result["ok"] = True
    except Failure as e:
        result["error"] = str(e)
    except asyncio.TimeoutError:
        result["error"] = f"deadline of {deadline}s passed"
    except Exception as e:  # noqa: BLE001 - a crash is a failure with its reason
        result["error"] = f"{type(e).__name__}: {e}"
        import traceback

        traceback.print_exc()
    result["seconds"] = round(time.monotonic() - t, 2)
    for p in ctx.people:
        if p.pc is not None:
            result.setdefault("pc_state", {})[p.name] = p.pc.connectionState
    await asyncio.gather(*(p.close() for p in ctx.people), return_exceptions=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="convene's base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--deadline", type=float, default=60.0, help="seconds for the whole scenario")
    args = ap.parse_args()
    # Last resort if the event loop itself is stuck: stacks to stderr, exit.
    faulthandler.dump_traceback_later(args.deadline + 20, exit=True)
    result = asyncio.run(run(args.base, args.scenario, args.deadline))
    log("result", json.dumps(result))
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
