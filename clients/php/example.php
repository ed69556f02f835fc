<?php
// A shop's web tier calling nudge's JSON API with PHP's curl extension (no
// composer package), for one visitor session: Track (what the visitor did)
// -> Decide (voucher or not) -> Redeem (the voucher at checkout) ->
// RecordOutcome (the order, sent twice to show it is idempotent).
//
// Usage: php example.php HOST:PORT      (e.g. php example.php 127.0.0.1:50051)
// Optional: NUDGE_TOKEN=<client token> when the server requires one.
//
// The one rule a shop must keep: nudge is never on the page's critical path.
// When Decide is slow or the service is down, the page shows no voucher and
// goes on (fail open); money is never at risk, the server fails closed on it.
//
// Bodies are the proto3 JSON mapping of proto/nudge/v1/nudge.proto: field
// names as in the .proto, enums by name, and 64-bit integers (cents, times)
// as JSON strings in answers ("amount_cents": "1000"). PHP's int is 64-bit,
// so (int) on such a string is exact; requests may send plain numbers.

declare(strict_types=1);

// Decide's deadline. 500 ms keeps this example robust on a loaded test
// machine; a shop should use what its page can afford to wait, typically
// 50-100 ms (nudge answers in well under a millisecond plus the network).
const DECIDE_DEADLINE_MS = 500;
// The other calls happen off the page render: they can wait longer.
const CALL_DEADLINE_MS = 2000;

/** A call that got no usable answer because nudge is slow or down. */
final class NudgeUnavailable extends RuntimeException
{
}

/** A call nudge refused: a bug in the caller, printed loudly. */
final class NudgeError extends RuntimeException
{
    /** @param list<array{field: string, description: string}> $fieldViolations */
    public function __construct(
        public readonly int $httpStatus,
        public readonly string $grpcCode,
        string $message,
        public readonly array $fieldViolations,
    ) {
        parent::__construct($message);
    }
}

/**
 * POSTs `$body` to `http://$addr$route` and returns the decoded answer.
 * Throws NudgeUnavailable on a timeout, a refused connection, 503 or 504,
 * and NudgeError with the error body's code and field violations otherwise.
 */
function call(string $addr, string $route, array $body, int $deadlineMs): array
{
    $headers = ['content-type: application/json'];
    $token = getenv('NUDGE_TOKEN');
    if ($token !== false && $token !== '') {
        $headers[] = "authorization: Bearer $token";
    }
    $ch = curl_init("http://$addr$route");
    curl_setopt_array($ch, [
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => json_encode($body, JSON_THROW_ON_ERROR),
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_RETURNTRANSFER => true,
        // The whole call, connection included, within the deadline.
        CURLOPT_TIMEOUT_MS => $deadlineMs,
        CURLOPT_CONNECTTIMEOUT_MS => $deadlineMs,
        // Sub-second timeouts without signals (libcurl's DNS alarm would
        // otherwise round them up to a second).
        CURLOPT_NOSIGNAL => true,
    ]);
    $raw = curl_exec($ch);
    $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    $errno = curl_errno($ch);
    $error = curl_error($ch);
    curl_close($ch);
    if ($raw === false || $errno !== 0) {
        throw new NudgeUnavailable("no answer (curl error $errno: $error)");
    }
    $answer = json_decode((string) $raw, true);
    if ($status === 200 && is_array($answer)) {
        return $answer;
    }
    $code = is_array($answer) ? (string) ($answer['code'] ?? '') : '';
    $message = is_array($answer) ? (string) ($answer['message'] ?? '') : (string) $raw;
    if ($status === 503 || $status === 504) {
        throw new NudgeUnavailable("HTTP $status $code: $message");
    }
    $violations = is_array($answer) ? ($answer['field_violations'] ?? []) : [];
    throw new NudgeError($status, $code, $message, $violations);
}

/** Prints a failed call; true when the caller should fail open. */
function report(string $what, RuntimeException $e): bool
{
    if ($e instanceof NudgeUnavailable) {
        echo "$what: {$e->getMessage()}: nudge is slow or down, going on without it\n";
        return true;
    }
    assert($e instanceof NudgeError);
    fwrite(STDERR, "$what failed: HTTP {$e->httpStatus} {$e->grpcCode}: {$e->getMessage()}\n");
    foreach ($e->fieldViolations as $v) {
        fwrite(STDERR, "  field {$v['field']}: {$v['description']}\n");
    }
    return false;
}

function main(array $argv): int
{
    if (count($argv) !== 2) {
        fwrite(STDERR, "usage: php example.php HOST:PORT\n");
        return 2;
    }
    $addr = $argv[1];

    // One session id per visit of the shop (here: unique per run, so the
    // example can run again against the same server).
    $sessionId = 'php-example-' . bin2hex(random_bytes(6));
    $now = (int) floor(microtime(true) * 1000);
    // Event times are the client's, in milliseconds since the epoch (never
    // seconds: the server refuses them, naming events[i].at_ms), spread over
    // the last few minutes as a real visit would be. A page view is sent
    // when the visitor leaves the page, so dwell and scroll are known.
    $ago = fn (int $seconds): int => $now - $seconds * 1000;
    $jacketCents = 18900;
    $events = [
        ['at_ms' => $ago(240), 'page_view' => ['page_kind' => 'PAGE_KIND_HOME', 'dwell_ms' => 12000, 'scroll_depth' => 0.4]],
        ['at_ms' => $ago(228), 'search' => ['results' => 24]],
        ['at_ms' => $ago(200), 'page_view' => ['page_kind' => 'PAGE_KIND_SEARCH', 'dwell_ms' => 28000, 'scroll_depth' => 0.7]],
        ['at_ms' => $ago(150), 'interaction' => ['signal' => 'SIGNAL_REVIEWS_OPENED']],
        ['at_ms' => $ago(130), 'page_view' => [
            'page_kind' => 'PAGE_KIND_PRODUCT',
            'product_id' => 'jacket-a',
            'price_cents' => $jacketCents,
            'dwell_ms' => 70000,
            'scroll_depth' => 0.85,
        ]],
        ['at_ms' => $ago(128), 'cart_add' => ['product_id' => 'jacket-a', 'unit_price_cents' => $jacketCents, 'quantity' => 1]],
        ['at_ms' => $ago(90), 'page_view' => ['page_kind' => 'PAGE_KIND_CART', 'dwell_ms' => 38000, 'scroll_depth' => 0.6]],
        ['at_ms' => $ago(45), 'checkout_step' => ['step' => 1]],
    ];
    $context = [
        'device' => 'DEVICE_MOBILE',
        'traffic_source' => 'TRAFFIC_SOURCE_SEARCH',
        'returning_visitor' => false,
        'prior_orders' => 0,
    ];

    // 1. Track: what happened so far. Fire-and-forget in a real shop.
    try {
        $t = call($addr, '/v1/track', [
            'session_id' => $sessionId,
            'visitor_id' => 'v-example',
            'context' => $context,
            'events' => $events,
        ], CALL_DEADLINE_MS);
        echo "track: accepted={$t['accepted']} session_events={$t['session_events']}\n";
    } catch (NudgeUnavailable | NudgeError $e) {
        if (!report('track', $e)) {
            return 1;
        }
    }

    // 2. Decide, carrying the latest events (the visitor focused the coupon
    // field, then moved to leave), so the decision is one round trip.
    $decision = null;
    try {
        $decision = call($addr, '/v1/decide', [
            'session_id' => $sessionId,
            'events' => [
                ['at_ms' => $now - 4000, 'interaction' => ['signal' => 'SIGNAL_COUPON_FIELD_FOCUS']],
                ['at_ms' => $now, 'interaction' => ['signal' => 'SIGNAL_EXIT_INTENT']],
            ],
        ], DECIDE_DEADLINE_MS);
    } catch (NudgeUnavailable | NudgeError $e) {
        if (!report('decide', $e)) {
            return 1;
        }
    }
    if ($decision === null) {
        echo "decision: unavailable: no voucher shown, the page goes on\n";
    } else {
        printf(
            "decision: segment=%s reason=%s p=%.3f intent_value_cents=%d model=%s\n",
            $decision['segment'],
            $decision['reason'],
            $decision['purchase_probability'],
            (int) $decision['intent_value_cents'],
            $decision['model_version'],
        );
    }

    // 3. Redeem at checkout, with the code the offer carried. No voucher is
    // `"offer": null` or no key at all.
    $offer = $decision['offer'] ?? null;
    $orderCents = $jacketCents;
    if ($offer === null) {
        echo "offer: none: no voucher shown, skipping redeem\n";
    } else {
        $amount = (int) $offer['amount_cents'];
        $expires = gmdate('Y-m-d\TH:i:s\Z', intdiv((int) $offer['expires_at_ms'], 1000));
        echo "offer: code={$offer['voucher_code']} amount_cents=$amount expires=$expires\n";
        try {
            $r = call($addr, '/v1/redeem', [
                'voucher_code' => $offer['voucher_code'],
                'session_id' => $sessionId,
                'order_value_cents' => $orderCents,
            ], CALL_DEADLINE_MS);
            $discount = (int) $r['discount_cents'];
            printf(
                "redeem: status=%s discount_cents=%d min_order_cents=%d replayed=%s to_pay_cents=%d\n",
                $r['status'],
                $discount,
                (int) $r['min_order_cents'],
                $r['replayed'] ? 'true' : 'false',
                $orderCents - $discount,
            );
            if ($r['status'] !== 'REDEEM_STATUS_ACCEPTED') {
                echo "redeem: not accepted: charge the full price\n";
            }
        } catch (NudgeUnavailable | NudgeError $e) {
            // Without an answer, the checkout charges the full price; a
            // retry of the same redemption later is answered ACCEPTED,
            // replayed.
            if (!report('redeem', $e)) {
                return 1;
            }
        }
    }

    // 4. RecordOutcome: the session bought. Sent twice, as a retry after a
    // lost answer would: the second call records nothing new.
    foreach (['outcome', 'outcome again'] as $attempt) {
        try {
            $o = call($addr, '/v1/outcome', [
                'session_id' => $sessionId,
                'converted' => true,
                'order_value_cents' => $orderCents,
            ], CALL_DEADLINE_MS);
            echo "$attempt: recorded=" . ($o['recorded'] ? 'true' : 'false') . "\n";
        } catch (NudgeUnavailable | NudgeError $e) {
            if (!report($attempt, $e)) {
                return 1;
            }
        }
    }
    return 0;
}

exit(main($argv));
