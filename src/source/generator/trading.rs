//! The `trading-events` stream: a small trading desk whose every invariant holds, unless the
//! Knight scenario puts old code on one host.
//!
//! Normal desk: eight hosts (`trade-1` .. `trade-8`) on one build send orders for five
//! accounts in five symbols. Every order resolves within 30 s of event time (filled
//! completely, or partly filled and cancelled, or cancelled); every fill has its own
//! `trade_id` (the counterparty is outside the firm); positions revert before ±10,000; every
//! host sends a heartbeat each 10 s; a settlement batch each minute sums to exactly zero.
//!
//! Knight scenario (from `knight_at` on): `trade-8` runs the old build. Its heartbeats say so
//! (version skew); it buys for `ACC-7` without end (position limit); each of its fills meets a
//! sell of another host's order of the firm under one `trade_id` (self-trade); it never
//! cancels what it did not fill (order deadline), and every tenth order fills past its
//! quantity (overfill).

use std::collections::HashMap;

use super::{format_ts, Rng, SYMBOLS};

pub use super::{BUILD, OLD_BUILD};
use crate::Millis;

pub const HOSTS: u64 = 8;
const ACCOUNTS: u64 = 5;
/// The account the old code trades for.
pub const KNIGHT_ACCOUNT: &str = "ACC-7";
const POSITION_SOFT_LIMIT: i64 = 4_000;

/// One event: (event time, partition key, JSON line).
pub type Made = (Millis, u64, String);

#[derive(Debug, Default)]
pub struct Desk {
    next_order: u64,
    next_trade: u64,
    next_batch: u64,
    next_heartbeat: Option<Millis>,
    next_settlement: Option<Millis>,
    /// Net filled quantity per (account, symbol).
    positions: HashMap<(String, usize), i64>,
    knight_orders: u64,
}

struct Order<'a> {
    id: u64,
    account: &'a str,
    symbol: &'a str,
    side: &'a str,
    host: u64,
    build: &'a str,
}

impl Desk {
    /// The events due at or before `ts` (heartbeats, settlements), then one order and its
    /// fills and cancel. `knight`: the old code runs from this event time on.
    pub fn make(&mut self, rng: &mut Rng, prices: &mut [i64], ts: Millis, knight: Option<Millis>, out: &mut Vec<Made>) {
        let broken = knight.is_some_and(|k| ts >= k);
        self.periodic(rng, ts, broken, out);
        let host = 1 + rng.below(HOSTS);
        let s = rng.below(SYMBOLS.len() as u64) as usize;
        let walk = (rng.normal() * 300.0) as i64 / 100 * 100;
        prices[s] = (prices[s] + walk).max(10_000);
        let price = prices[s];
        if broken && host == HOSTS {
            self.knight_order(rng, ts, s, price, out);
            return;
        }
        let account = format!("ACC-{}", 1 + rng.below(ACCOUNTS));
        let net = *self.positions.get(&(account.clone(), s)).unwrap_or(&0);
        let side = match net {
            n if n > POSITION_SOFT_LIMIT => "sell",
            n if n < -POSITION_SOFT_LIMIT => "buy",
            _ if rng.below(2) == 0 => "buy",
            _ => "sell",
        };
        let qty = 100 * (1 + rng.below(20) as i64);
        self.next_order += 1;
        let order = Order { id: self.next_order, account: &account, symbol: SYMBOLS[s].0, side, host, build: BUILD };
        out.push((ts, order.id, order_line(ts, &order, qty, price)));
        let roll = rng.next_f64();
        let filled = if roll < 0.85 {
            qty
        } else if roll < 0.95 {
            (qty / 200).max(1) * 100 - if qty == 100 { 100 } else { 0 }
        } else {
            0
        };
        let mut t = ts;
        let mut left = qty;
        let parts = if filled == qty && rng.below(3) == 0 && qty > 100 { 2 } else { 1 };
        let mut to_fill = filled;
        for i in 0..parts {
            if to_fill == 0 {
                break;
            }
            let q = if i + 1 == parts { to_fill } else { (to_fill / 200).max(1) * 100 };
            to_fill -= q;
            left -= q;
            t += 5 + (rng.next_f64() * 3_000.0) as Millis;
            let fill_price = price + (rng.below(3) as i64 - 1) * 100;
            self.next_trade += 1;
            out.push((t, order.id, fill_line(t, &order, self.next_trade, q, left, fill_price)));
        }
        let signed = if side == "buy" { filled } else { -filled };
        *self.positions.entry((account.clone(), s)).or_default() += signed;
        if left > 0 {
            t += 1_000 + (rng.next_f64() * 19_000.0) as Millis;
            out.push((t, order.id, cancel_line(t, &order)));
        }
    }

    /// Old code on the last host: buys without limit, meets the firm's own sells, never
    /// cancels, sometimes fills past the order.
    fn knight_order(&mut self, rng: &mut Rng, ts: Millis, s: usize, price: i64, out: &mut Vec<Made>) {
        self.knight_orders += 1;
        let qty = 100 * (5 + rng.below(16) as i64);
        self.next_order += 1;
        let symbol = SYMBOLS[s].0;
        let order = Order { id: self.next_order, account: KNIGHT_ACCOUNT, symbol, side: "buy", host: HOSTS, build: OLD_BUILD };
        out.push((ts, order.id, order_line(ts, &order, qty, price)));
        let overfill = self.knight_orders % 10 == 0;
        // Half of it fills (the rest stays open), against a sell the firm's other hosts sent.
        let q = if overfill { qty + 100 } else { (qty / 200).max(1) * 100 };
        let t = ts + 5 + (rng.next_f64() * 1_000.0) as Millis;
        self.next_trade += 1;
        let trade = self.next_trade;
        out.push((t, order.id, fill_line(t, &order, trade, q, (qty - q).max(0), price)));
        self.next_order += 1;
        let other_host = 1 + rng.below(HOSTS - 1);
        let account = format!("ACC-{}", 1 + rng.below(ACCOUNTS));
        let sell = Order { id: self.next_order, account: &account, symbol, side: "sell", host: other_host, build: BUILD };
        out.push((ts, sell.id, order_line(ts, &sell, q, price)));
        out.push((t, sell.id, fill_line(t, &sell, trade, q, 0, price)));
        *self.positions.entry((account.clone(), s)).or_default() -= q;
    }

    /// Heartbeats every 10 s per host, a settlement batch each minute, up to `ts`.
    fn periodic(&mut self, rng: &mut Rng, ts: Millis, broken: bool, out: &mut Vec<Made>) {
        let beat = self.next_heartbeat.get_or_insert(ts - ts.rem_euclid(10_000));
        while *beat <= ts {
            let at = *beat;
            for h in 1..=HOSTS {
                let build = if broken && h == HOSTS { OLD_BUILD } else { BUILD };
                let t = at + h as Millis * 7;
                out.push((t, h, format!("{{\"ts\":\"{}\",\"event\":\"heartbeat\",\"service\":\"oms\",\"host\":\"trade-{h}\",\"build\":\"{build}\"}}", format_ts(t))));
            }
            *beat += 10_000;
        }
        let settle = self.next_settlement.get_or_insert(ts - ts.rem_euclid(60_000) + 30_000);
        while *settle <= ts {
            let minute = *settle - settle.rem_euclid(60_000);
            self.next_batch += 1;
            let batch = self.next_batch;
            let entries = 2 + rng.below(3);
            let mut sum: i64 = 0;
            for i in 0..entries {
                // Amounts in ten-thousandths; the last entry balances the batch exactly.
                let amount = if i + 1 == entries { -sum } else { (rng.below(2_000_000_000) as i64 - 1_000_000_000) | 1 };
                sum += amount;
                let t = minute + 30_000 + i as Millis * 1_000;
                let account = format!("ACC-{}", 1 + rng.below(ACCOUNTS));
                out.push((
                    t,
                    batch,
                    format!(
                        "{{\"ts\":\"{}\",\"event\":\"cash\",\"batch_id\":\"B-{batch:06}\",\"account\":\"{account}\",\"amount\":\"{}\"}}",
                        format_ts(t),
                        decimal(amount)
                    ),
                ));
            }
            *settle += 60_000;
        }
    }
}

/// Ten-thousandths as an exact decimal string: -12345 → "-1.2345".
fn decimal(x: i64) -> String {
    let sign = if x < 0 { "-" } else { "" };
    let a = x.unsigned_abs();
    format!("{sign}{}.{:04}", a / 10_000, a % 10_000)
}

fn order_line(ts: Millis, o: &Order, qty: i64, price: i64) -> String {
    format!(
        "{{\"ts\":\"{}\",\"event\":\"order\",\"order_id\":\"O-{:07}\",\"account\":\"{}\",\"symbol\":\"{}\",\"side\":\"{}\",\"qty\":{qty},\"price\":\"{}\",\"host\":\"trade-{}\",\"build\":\"{}\"}}",
        format_ts(ts),
        o.id,
        o.account,
        o.symbol,
        o.side,
        decimal(price),
        o.host,
        o.build
    )
}

fn fill_line(ts: Millis, o: &Order, trade: u64, qty: i64, leaves: i64, price: i64) -> String {
    format!(
        "{{\"ts\":\"{}\",\"event\":\"fill\",\"order_id\":\"O-{:07}\",\"trade_id\":\"T-{trade:08}\",\"account\":\"{}\",\"symbol\":\"{}\",\"side\":\"{}\",\"qty\":{qty},\"price\":\"{}\",\"leaves_qty\":{leaves},\"host\":\"trade-{}\",\"build\":\"{}\"}}",
        format_ts(ts),
        o.id,
        o.account,
        o.symbol,
        o.side,
        decimal(price),
        o.host,
        o.build
    )
}

fn cancel_line(ts: Millis, o: &Order) -> String {
    format!(
        "{{\"ts\":\"{}\",\"event\":\"cancel\",\"order_id\":\"O-{:07}\",\"account\":\"{}\",\"symbol\":\"{}\",\"host\":\"trade-{}\",\"build\":\"{}\"}}",
        format_ts(ts),
        o.id,
        o.account,
        o.symbol,
        o.host,
        o.build
    )
}
