#!/usr/bin/env node
// A shop's web tier calling nudge over gRPC, for one visitor session:
// Track (what the visitor did) -> Decide (voucher or not) -> Redeem (the
// voucher at checkout) -> RecordOutcome (the order, sent twice to show it
// is idempotent).
//
// Usage: node example.js HOST:PORT      (e.g. node example.js 127.0.0.1:50051)
// Optional: NUDGE_TOKEN=<client token> when the server requires one.
//
// The one rule a shop must keep: nudge is never on the page's critical path.
// When Decide is slow or the service is down, the page shows no voucher and
// goes on (fail open); money is never at risk, the server fails closed on it.
'use strict';

const path = require('path');
const crypto = require('crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const addr = process.argv[2];
if (!addr) {
  console.error('usage: node example.js HOST:PORT');
  process.exit(2);
}

// The contract is read from the repository's proto/ at start-up (no code
// generation step). The options matter:
// - keepCase: field names as in the .proto (session_id, amount_cents);
// - longs: String: int64/uint64 fields (cents, times) arrive as decimal
//   strings. JavaScript numbers are exact only up to 2^53, so a 64-bit value
//   is never silently rounded; convert it where you use it (see cents()).
//   On the way in, int64 fields accept a number or a decimal string;
// - enums: String: enum values arrive by name ("REASON_OFFERED");
// - defaults: zero values are present (an unset offer stays null).
const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync('nudge/v1/nudge.proto', {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const { Offers } = grpc.loadPackageDefinition(definition).nudge.v1;

// Decide's deadline. 500 ms keeps this example robust on a loaded test
// machine; a shop should use what its page can afford to wait, typically
// 50-100 ms (nudge answers in well under a millisecond plus the network).
const DECIDE_DEADLINE_MS = 500;
// The other calls happen off the page render (in a queue, or after the
// response is sent): they can wait longer.
const CALL_DEADLINE_MS = 2000;

// Codes on which the page shows no voucher and goes on: nudge is slow or
// down. Anything else (INVALID_ARGUMENT naming a field, UNAUTHENTICATED...)
// is a bug in the caller and is printed loudly.
const FAIL_OPEN = new Set([grpc.status.DEADLINE_EXCEEDED, grpc.status.UNAVAILABLE]);

const client = new Offers(addr, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
if (process.env.NUDGE_TOKEN) {
  metadata.set('authorization', `Bearer ${process.env.NUDGE_TOKEN}`);
}

/** One unary call as a promise, with a deadline `ms` from now. */
function call(method, request, ms) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + ms }, (err, res) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** A 64-bit field (a decimal string under longs: String) as a BigInt: exact
 * whatever its size, and cents stay integers. */
function cents(value) {
  return BigInt(value);
}

// A refused call (INVALID_ARGUMENT) carries a google.rpc.Status in the
// grpc-status-details-bin trailer, whose details hold a google.rpc.BadRequest:
// one field violation per bad field, each a path into the request
// (`events[2].at_ms`) and a description. The message is for people; the path
// is for code, which should not parse it out of the message.
//
// The two messages are decoded by hand rather than with protobufjs: they use
// only varints and length-delimited fields, so the reader below is a few
// lines, and an example a shop copies brings no runtime dependency beyond
// grpc-js and proto-loader (whose own protobufjs is theirs, not an API to
// lean on).
//   google.rpc.Status     { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
//   google.protobuf.Any   { string type_url = 1; bytes value = 2; }
//   google.rpc.BadRequest { repeated FieldViolation field_violations = 1; }
//   FieldViolation        { string field = 1; string description = 2; }
const BAD_REQUEST_TYPE = 'type.googleapis.com/google.rpc.BadRequest';

/** The fields of one encoded message, as [number, wireType, value]: a
 * BigInt for a varint, a Buffer for a length-delimited field. Fixed-size
 * fields (none in these messages) are skipped, so later additions to them
 * do not break the reader. */
function* protoFields(buf) {
  let pos = 0;
  const varint = () => {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= buf.length) break;
      const byte = buf[pos++];
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
    }
    throw new Error('malformed varint');
  };
  const skip = (n) => {
    if (pos + n > buf.length) throw new Error('truncated field');
    const start = pos;
    pos += n;
    return buf.subarray(start, pos);
  };
  while (pos < buf.length) {
    const key = varint();
    const number = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (wireType === 0) yield [number, wireType, varint()];
    else if (wireType === 2) yield [number, wireType, skip(Number(varint()))];
    else if (wireType === 1) skip(8);
    else if (wireType === 5) skip(4);
    else throw new Error(`unsupported wire type ${wireType}`);
  }
}

/** The length-delimited fields numbered `number` of an encoded message. */
function bytesFields(buf, number) {
  return [...protoFields(buf)].filter(([n, w]) => n === number && w === 2).map(([, , v]) => v);
}

/** The google.rpc.BadRequest field violations of a failed call, [] when it
 * carries none. */
function fieldViolations(err) {
  const trailer = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (trailer.length === 0) return [];
  const violations = [];
  for (const any of bytesFields(trailer[0], 3)) {
    const [typeUrl] = bytesFields(any, 1);
    if (!typeUrl || typeUrl.toString('utf8') !== BAD_REQUEST_TYPE) continue;
    const [value = Buffer.alloc(0)] = bytesFields(any, 2);
    for (const v of bytesFields(value, 1)) {
      const [field] = bytesFields(v, 1);
      const [description] = bytesFields(v, 2);
      violations.push({
        field: field ? field.toString('utf8') : '',
        description: description ? description.toString('utf8') : '',
      });
    }
  }
  return violations;
}

/** Prints a failed call; true when the caller should fail open. */
function report(what, err) {
  const name = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code) || err.code;
  if (FAIL_OPEN.has(err.code)) {
    console.log(`${what}: ${name} (${err.details}): nudge is slow or down, going on without it`);
    return true;
  }
  console.error(`${what} failed: ${name}: ${err.details}`);
  let violations = [];
  try {
    violations = fieldViolations(err);
  } catch (e) {
    // A malformed trailer must not hide the error itself, printed above.
    console.error(`  (grpc-status-details-bin not decoded: ${e.message})`);
  }
  for (const v of violations) {
    console.error(`  field ${v.field}: ${v.description}`);
  }
  return false;
}

async function main() {
  // One session id per page view of the shop (here: unique per run, so the
  // example can run again against the same server).
  const sessionId = `node-example-${crypto.randomBytes(6).toString('hex')}`;
  const now = Date.now();
  // Event times are the client's, in milliseconds since the epoch (never
  // seconds: the server refuses them, naming events[i].at_ms), spread over
  // the last few minutes as a real visit would be. A page view is sent when
  // the visitor leaves the page, so dwell and scroll are known.
  const ago = (seconds) => String(now - seconds * 1000);
  const jacketCents = 18900;
  const events = [
    { at_ms: ago(240), page_view: { page_kind: 'PAGE_KIND_HOME', dwell_ms: 12000, scroll_depth: 0.4 } },
    { at_ms: ago(228), search: { results: 24 } },
    { at_ms: ago(200), page_view: { page_kind: 'PAGE_KIND_SEARCH', dwell_ms: 28000, scroll_depth: 0.7 } },
    { at_ms: ago(150), interaction: { signal: 'SIGNAL_REVIEWS_OPENED' } },
    {
      at_ms: ago(130),
      page_view: {
        page_kind: 'PAGE_KIND_PRODUCT',
        product_id: 'jacket-a',
        price_cents: jacketCents,
        dwell_ms: 70000,
        scroll_depth: 0.85,
      },
    },
    { at_ms: ago(128), cart_add: { product_id: 'jacket-a', unit_price_cents: jacketCents, quantity: 1 } },
    { at_ms: ago(90), page_view: { page_kind: 'PAGE_KIND_CART', dwell_ms: 38000, scroll_depth: 0.6 } },
    { at_ms: ago(45), checkout_step: { step: 1 } },
  ];
  const context = {
    device: 'DEVICE_MOBILE',
    traffic_source: 'TRAFFIC_SOURCE_SEARCH',
    returning_visitor: false,
    prior_orders: 0,
  };

  // 1. Track: what happened so far. Fire-and-forget in a real shop.
  try {
    const t = await call('Track', { session_id: sessionId, visitor_id: 'v-example', context, events }, CALL_DEADLINE_MS);
    console.log(`track: accepted=${t.accepted} session_events=${t.session_events}`);
  } catch (err) {
    if (!report('track', err)) return 1;
  }

  // 2. Decide, carrying the latest events (the visitor focused the coupon
  // field, then moved to leave), so the decision is one round trip.
  let decision = null;
  try {
    decision = await call(
      'Decide',
      {
        session_id: sessionId,
        events: [
          { at_ms: String(now - 4000), interaction: { signal: 'SIGNAL_COUPON_FIELD_FOCUS' } },
          { at_ms: String(now), interaction: { signal: 'SIGNAL_EXIT_INTENT' } },
        ],
      },
      DECIDE_DEADLINE_MS,
    );
  } catch (err) {
    if (!report('decide', err)) return 1;
  }
  if (decision === null) {
    console.log('decision: unavailable: no voucher shown, the page goes on');
  } else {
    console.log(
      `decision: segment=${decision.segment} reason=${decision.reason} ` +
        `p=${decision.purchase_probability.toFixed(3)} ` +
        `intent_value_cents=${cents(decision.intent_value_cents)} model=${decision.model_version}`,
    );
  }

  // 3. Redeem at checkout, with the code the offer carried.
  const offer = decision && decision.offer;
  const orderCents = cents(jacketCents);
  if (!offer) {
    console.log('offer: none: no voucher shown, skipping redeem');
  } else {
    const amount = cents(offer.amount_cents);
    const expires = new Date(Number(cents(offer.expires_at_ms))).toISOString();
    console.log(`offer: code=${offer.voucher_code} amount_cents=${amount} expires=${expires}`);
    try {
      const r = await call(
        'Redeem',
        // Sent as a decimal string, as received: exact for any int64.
        { voucher_code: offer.voucher_code, session_id: sessionId, order_value_cents: orderCents.toString() },
        CALL_DEADLINE_MS,
      );
      const discount = cents(r.discount_cents);
      console.log(
        `redeem: status=${r.status} discount_cents=${discount} min_order_cents=${cents(r.min_order_cents)} ` +
          `replayed=${r.replayed} to_pay_cents=${orderCents - discount}`,
      );
      if (r.status !== 'REDEEM_STATUS_ACCEPTED') {
        console.log('redeem: not accepted: charge the full price');
      }
    } catch (err) {
      // Without an answer, the checkout charges the full price; a retry of
      // the same redemption later is answered ACCEPTED with replayed=true.
      if (!report('redeem', err)) return 1;
    }
  }

  // 4. RecordOutcome: the session bought. Sent twice, as a retry after a lost
  // answer would: the second call records nothing new (recorded=false).
  for (const attempt of ['outcome', 'outcome again']) {
    try {
      const o = await call(
        'RecordOutcome',
        { session_id: sessionId, converted: true, order_value_cents: orderCents.toString() },
        CALL_DEADLINE_MS,
      );
      console.log(`${attempt}: recorded=${o.recorded}`);
    } catch (err) {
      if (!report(attempt, err)) return 1;
    }
  }
  return 0;
}

main()
  .then((code) => {
    // Let the process end by itself, so that buffered output is written.
    client.close();
    process.exitCode = code;
  })
  .catch((err) => {
    console.error(`unexpected: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  });
