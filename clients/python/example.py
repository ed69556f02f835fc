#!/usr/bin/env python3
"""A shop's web tier calling nudge over gRPC, for one visitor session:
Track (what the visitor did) -> Decide (voucher or not) -> Redeem (the
voucher at checkout) -> RecordOutcome (the order, sent twice to show it is
idempotent).

Usage: python3 example.py HOST:PORT    (e.g. python3 example.py 127.0.0.1:50051)
Optional: NUDGE_TOKEN=<client token> when the server requires one.

The stubs are generated from the repository's proto/ at start-up, with
grpcio-tools, into a temporary directory: no generated code to commit and
keep in step with the contract. A shop would rather generate them once at
build time (the same `grpc_tools.protoc` command) and import them.

The one rule a shop must keep: nudge is never on the page's critical path.
When Decide is slow or the service is down, the page shows no voucher and
goes on (fail open); money is never at risk, the server fails closed on it.
"""

import importlib
import os
import secrets
import sys
import tempfile
import time

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from grpc_tools import protoc

# Decide's deadline. 0.5 s keeps this example robust on a loaded test
# machine; a shop should use what its page can afford to wait, typically
# 50-100 ms (nudge answers in well under a millisecond plus the network).
DECIDE_DEADLINE_S = 0.5
# The other calls happen off the page render: they can wait longer.
CALL_DEADLINE_S = 2.0

# Codes on which the page shows no voucher and goes on: nudge is slow or
# down. Anything else (INVALID_ARGUMENT naming a field, UNAUTHENTICATED...)
# is a bug in the caller and is printed loudly.
FAIL_OPEN = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs(out_dir):
    """Generates nudge/v1/nudge_pb2.py and nudge_pb2_grpc.py into `out_dir`
    and imports them."""
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            "nudge/v1/nudge.proto",
        ]
    )
    if rc != 0:
        raise SystemExit(f"cannot generate stubs from {PROTO_ROOT} (protoc exit {rc})")
    sys.path.insert(0, out_dir)
    return (
        importlib.import_module("nudge.v1.nudge_pb2"),
        importlib.import_module("nudge.v1.nudge_pb2_grpc"),
    )


def field_violations(err):
    """The google.rpc.BadRequest field violations a refused call carries
    (INVALID_ARGUMENT), from the grpc-status-details-bin trailer: each has a
    `field` path into the request (`events[2].at_ms`) and a `description`.
    The message is for people; the path is for code, which should not parse
    it out of the message."""
    # A raised grpc.RpcError is also the Call: it holds the trailers.
    # from_call raises ValueError when the trailer disagrees with the call's
    # code or message.
    status = rpc_status.from_call(err)
    if status is None:
        return []
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend(bad_request.field_violations)
    return violations


def report(what, err):
    """Prints a failed call; True when the caller should fail open."""
    if err.code() in FAIL_OPEN:
        print(f"{what}: {err.code().name} ({err.details()}): nudge is slow or down, going on without it")
        return True
    print(f"{what} failed: {err.code().name}: {err.details()}", file=sys.stderr)
    try:
        violations = field_violations(err)
    except (ValueError, DecodeError) as e:
        # A malformed trailer must not hide the error itself, printed above.
        print(f"  (grpc-status-details-bin not decoded: {e})", file=sys.stderr)
        violations = []
    for v in violations:
        print(f"  field {v.field}: {v.description}", file=sys.stderr)
    return False


def run(addr, pb, rpc):
    metadata = []
    if os.environ.get("NUDGE_TOKEN"):
        metadata.append(("authorization", f"Bearer {os.environ['NUDGE_TOKEN']}"))
    channel = grpc.insecure_channel(addr)
    offers = rpc.OffersStub(channel)

    # One session id per visit of the shop (here: unique per run, so the
    # example can run again against the same server).
    session_id = f"python-example-{secrets.token_hex(6)}"
    now = int(time.time() * 1000)

    # Event times are the client's, in milliseconds since the epoch (never
    # seconds: the server refuses them, naming events[i].at_ms), spread over
    # the last few minutes as a real visit would be. A page view is sent
    # when the visitor leaves the page, so dwell and scroll are known.
    # Python ints are exact at 64 bits: cents and times need no care.
    def ago(seconds):
        return now - seconds * 1000

    jacket_cents = 18900
    events = [
        pb.Event(at_ms=ago(240), page_view=pb.PageView(page_kind=pb.PAGE_KIND_HOME, dwell_ms=12000, scroll_depth=0.4)),
        pb.Event(at_ms=ago(228), search=pb.Search(results=24)),
        pb.Event(at_ms=ago(200), page_view=pb.PageView(page_kind=pb.PAGE_KIND_SEARCH, dwell_ms=28000, scroll_depth=0.7)),
        pb.Event(at_ms=ago(150), interaction=pb.Interaction(signal=pb.SIGNAL_REVIEWS_OPENED)),
        pb.Event(
            at_ms=ago(130),
            page_view=pb.PageView(
                page_kind=pb.PAGE_KIND_PRODUCT,
                product_id="jacket-a",
                price_cents=jacket_cents,
                dwell_ms=70000,
                scroll_depth=0.85,
            ),
        ),
        pb.Event(at_ms=ago(128), cart_add=pb.CartChange(product_id="jacket-a", unit_price_cents=jacket_cents, quantity=1)),
        pb.Event(at_ms=ago(90), page_view=pb.PageView(page_kind=pb.PAGE_KIND_CART, dwell_ms=38000, scroll_depth=0.6)),
        pb.Event(at_ms=ago(45), checkout_step=pb.CheckoutStep(step=1)),
    ]
    context = pb.SessionContext(
        device=pb.DEVICE_MOBILE, traffic_source=pb.TRAFFIC_SOURCE_SEARCH, returning_visitor=False, prior_orders=0
    )

    # 1. Track: what happened so far. Fire-and-forget in a real shop.
    try:
        t = offers.Track(
            pb.TrackRequest(session_id=session_id, visitor_id="v-example", context=context, events=events),
            timeout=CALL_DEADLINE_S,
            metadata=metadata,
        )
        print(f"track: accepted={t.accepted} session_events={t.session_events}")
    except grpc.RpcError as err:
        if not report("track", err):
            return 1

    # 2. Decide, carrying the latest events (the visitor focused the coupon
    # field, then moved to leave), so the decision is one round trip.
    decision = None
    try:
        decision = offers.Decide(
            pb.DecideRequest(
                session_id=session_id,
                events=[
                    pb.Event(at_ms=now - 4000, interaction=pb.Interaction(signal=pb.SIGNAL_COUPON_FIELD_FOCUS)),
                    pb.Event(at_ms=now, interaction=pb.Interaction(signal=pb.SIGNAL_EXIT_INTENT)),
                ],
            ),
            timeout=DECIDE_DEADLINE_S,
            metadata=metadata,
        )
    except grpc.RpcError as err:
        if not report("decide", err):
            return 1
    if decision is None:
        print("decision: unavailable: no voucher shown, the page goes on")
    else:
        print(
            f"decision: segment={pb.Segment.Name(decision.segment)} reason={pb.Reason.Name(decision.reason)} "
            f"p={decision.purchase_probability:.3f} intent_value_cents={decision.intent_value_cents} "
            f"model={decision.model_version}"
        )

    # 3. Redeem at checkout, with the code the offer carried. `offer` is a
    # message field: HasField tells an absent offer from an empty one.
    order_cents = jacket_cents
    if decision is None or not decision.HasField("offer"):
        print("offer: none: no voucher shown, skipping redeem")
    else:
        offer = decision.offer
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(offer.expires_at_ms // 1000))
        print(f"offer: code={offer.voucher_code} amount_cents={offer.amount_cents} expires={expires}")
        try:
            r = offers.Redeem(
                pb.RedeemRequest(voucher_code=offer.voucher_code, session_id=session_id, order_value_cents=order_cents),
                timeout=CALL_DEADLINE_S,
                metadata=metadata,
            )
            print(
                f"redeem: status={pb.RedeemStatus.Name(r.status)} discount_cents={r.discount_cents} "
                f"min_order_cents={r.min_order_cents} replayed={str(r.replayed).lower()} "
                f"to_pay_cents={order_cents - r.discount_cents}"
            )
            if r.status != pb.REDEEM_STATUS_ACCEPTED:
                print("redeem: not accepted: charge the full price")
        except grpc.RpcError as err:
            # Without an answer, the checkout charges the full price; a retry
            # of the same redemption later is answered ACCEPTED, replayed.
            if not report("redeem", err):
                return 1

    # 4. RecordOutcome: the session bought. Sent twice, as a retry after a
    # lost answer would: the second call records nothing new.
    for attempt in ("outcome", "outcome again"):
        try:
            o = offers.RecordOutcome(
                pb.RecordOutcomeRequest(session_id=session_id, converted=True, order_value_cents=order_cents),
                timeout=CALL_DEADLINE_S,
                metadata=metadata,
            )
            print(f"{attempt}: recorded={str(o.recorded).lower()}")
        except grpc.RpcError as err:
            if not report(attempt, err):
                return 1
    channel.close()
    return 0


def main():
    if len(sys.argv) != 2:
        print("usage: python3 example.py HOST:PORT", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="nudge-stubs-") as out_dir:
        pb, rpc = load_stubs(out_dir)
        return run(sys.argv[1], pb, rpc)


if __name__ == "__main__":
    sys.exit(main())
