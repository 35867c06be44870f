//! One endpoint's RFC 9293 state machine, driven by the model's transition table.
//!
//! Theory of operation
//! -------------------
//! There is no table of states or transitions in this crate. [`Table`] is built
//! at run time from rows the caller hands over: the Python side reads
//! `tcplens.model.machine.TRANSITIONS` (see `Table::from_model` in `py_conn.rs`),
//! and `cargo test` reads the same rows from `tests/data/transitions.tsv`, which
//! a Python test holds equal to the model. States and events are interned as
//! small integers in the order the model lists them; the few the engine must
//! name (the tracker's rules mention `SYN_RECV`, `RCV_FIN`, ...) are looked up
//! by name once, at construction, and a model without them is refused.
//!
//! [`Endpoint`] is a line-by-line port of `tcplens.model.machine.Endpoint`: what
//! cannot be a row (classifying a segment with sequence numbers, RST
//! acceptability, the 2MSL timer, out-of-order segments) lives here, exactly as
//! in the model's "theory of operation". The tracker (`tracker.rs`) is held
//! equal to the Python reference by `tests/packets/test_engine_diff.py`.

#![forbid(unsafe_code)]

/// A state, as its position in the model's `State` enum.
pub type StateId = u8;
/// An event, as its position in the model's `Event` enum.
pub type EventId = u8;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const URG: u8 = 0x20;

/// Receive window assumed for RST acceptability (the model's `RCV_WINDOW`).
const RCV_WINDOW: u32 = 65535;

/// `a >= b` in 32-bit sequence space (RFC 9293 3.4).
pub fn seq_ge(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) < (1 << 31)
}

/// `a > b` in 32-bit sequence space.
pub fn seq_after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < (1 << 31)
}

/// One row of the transition table as handed over (names as in the model's enums).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowSpec {
    pub state: String,
    pub event: String,
    /// The context of a context row as `Class.NAME` (`Opening.PASSIVE`,
    /// `Closing.CLOSE`), `None` for a plain one.
    pub context: Option<String>,
    pub next: String,
    /// Flag bytes of the segments the row sends.
    pub send: Vec<u8>,
}

/// One row, resolved.
#[derive(Clone, Debug)]
pub struct Row {
    pub next: StateId,
    pub send: Vec<u8>,
}

/// The states the engine's rules name (resolved from the model by name).
#[derive(Clone, Copy, Debug)]
pub struct States {
    pub closed: StateId,
    pub listen: StateId,
    pub syn_sent: StateId,
    pub syn_recv: StateId,
    pub established: StateId,
    pub fin_wait1: StateId,
    pub fin_wait2: StateId,
    pub close_wait: StateId,
    pub closing: StateId,
    pub last_ack: StateId,
    pub time_wait: StateId,
    pub unknown: StateId,
}

/// The events the engine's rules name (resolved from the model by name).
#[derive(Clone, Copy, Debug)]
pub struct Events {
    pub connect: EventId,
    pub send: EventId,
    pub close: EventId,
    pub abort: EventId,
    pub rcv_syn: EventId,
    pub rcv_syn_ack: EventId,
    pub rcv_ack: EventId,
    pub rcv_data: EventId,
    pub rcv_fin: EventId,
    pub rcv_fin_ack: EventId,
    pub rcv_rst: EventId,
    pub timeout_rto: EventId,
    pub timeout_2msl: EventId,
    /// Events a newer model has; `None` when the model handed over lacks them.
    pub shutdown: Option<EventId>,
    pub timeout_connect: Option<EventId>,
    pub timeout_keepalive: Option<EventId>,
}

/// The row contexts the engine's rules name (`Opening.*`, `Closing.*`).
#[derive(Clone, Copy, Debug)]
pub struct Contexts {
    pub passive: u8,
    pub active: u8,
    pub close: Option<u8>,
    pub shutdown: Option<u8>,
}

/// The model's transition table, interned.
#[derive(Clone, Debug)]
pub struct Table {
    /// `State` member names, in the model's order (index = [`StateId`]).
    pub state_names: Vec<String>,
    /// `str(State)` for each state: what messages print.
    pub state_texts: Vec<String>,
    /// `Event` member names and values (the value is the history cause, e.g. `rcv SYN`).
    pub event_names: Vec<String>,
    pub event_values: Vec<String>,
    /// Context names (`Opening.PASSIVE`, ...), interned from the rows.
    pub context_names: Vec<String>,
    plain: Vec<Option<Row>>,
    context: Vec<Option<Row>>,
    synchronized: Vec<bool>,
    segment_event: Vec<bool>,
    specs: Vec<RowSpec>,
    pub s: States,
    pub e: Events,
    pub c: Contexts,
}

impl Table {
    /// Build the table from the model's enums and rows; an unknown name is an error.
    ///
    /// `states` are `(name, str(state))`, `events` `(name, value)`, both in enum
    /// order; `synchronized` names `STATE_GROUPS["synchronized"]`.
    pub fn new(
        states: &[(String, String)],
        events: &[(String, String)],
        synchronized: &[String],
        rows: Vec<RowSpec>,
    ) -> Result<Table, String> {
        if states.len() > usize::from(u8::MAX) || events.len() > usize::from(u8::MAX) {
            return Err("too many states or events for the engine".into());
        }
        let state_names: Vec<String> = states.iter().map(|(n, _)| n.clone()).collect();
        let state_texts: Vec<String> = states.iter().map(|(_, t)| t.clone()).collect();
        let event_names: Vec<String> = events.iter().map(|(n, _)| n.clone()).collect();
        let event_values: Vec<String> = events.iter().map(|(_, v)| v.clone()).collect();
        let state = |name: &str| -> Result<StateId, String> {
            state_names
                .iter()
                .position(|n| n == name)
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| format!("the model has no state {name}"))
        };
        let event = |name: &str| -> Result<EventId, String> {
            event_names
                .iter()
                .position(|n| n == name)
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| format!("the model has no event {name}"))
        };
        let n_ev = event_names.len();
        let mut context_names: Vec<String> =
            vec!["Opening.PASSIVE".into(), "Opening.ACTIVE".into()];
        for spec in &rows {
            if let Some(c) = &spec.context {
                if !context_names.contains(c) {
                    context_names.push(c.clone());
                }
            }
        }
        if context_names.len() > usize::from(u8::MAX) {
            return Err("too many row contexts for the engine".into());
        }
        let n_ctx = context_names.len();
        let context_id = |name: &str| -> Option<u8> {
            context_names
                .iter()
                .position(|n| n == name)
                .and_then(|i| u8::try_from(i).ok())
        };
        let mut plain: Vec<Option<Row>> = vec![None; state_names.len() * n_ev];
        let mut context: Vec<Option<Row>> = vec![None; state_names.len() * n_ev * n_ctx];
        for spec in &rows {
            let at = usize::from(state(&spec.state)?) * n_ev + usize::from(event(&spec.event)?);
            let row = Row {
                next: state(&spec.next)?,
                send: spec.send.clone(),
            };
            match &spec.context {
                None => plain[at] = Some(row),
                Some(c) => {
                    let k = context_id(c).ok_or_else(|| format!("unknown row context {c}"))?;
                    context[at * n_ctx + usize::from(k)] = Some(row);
                }
            }
        }
        let mut sync = vec![false; state_names.len()];
        for name in synchronized {
            sync[usize::from(state(name)?)] = true;
        }
        let segment_event = event_names.iter().map(|n| n.starts_with("RCV_")).collect();
        let s = States {
            closed: state("CLOSED")?,
            listen: state("LISTEN")?,
            syn_sent: state("SYN_SENT")?,
            syn_recv: state("SYN_RECV")?,
            established: state("ESTABLISHED")?,
            fin_wait1: state("FIN_WAIT1")?,
            fin_wait2: state("FIN_WAIT2")?,
            close_wait: state("CLOSE_WAIT")?,
            closing: state("CLOSING")?,
            last_ack: state("LAST_ACK")?,
            time_wait: state("TIME_WAIT")?,
            unknown: state("UNKNOWN")?,
        };
        let e = Events {
            connect: event("CONNECT")?,
            send: event("SEND")?,
            close: event("CLOSE")?,
            abort: event("ABORT")?,
            rcv_syn: event("RCV_SYN")?,
            rcv_syn_ack: event("RCV_SYN_ACK")?,
            rcv_ack: event("RCV_ACK")?,
            rcv_data: event("RCV_DATA")?,
            rcv_fin: event("RCV_FIN")?,
            rcv_fin_ack: event("RCV_FIN_ACK")?,
            rcv_rst: event("RCV_RST")?,
            timeout_rto: event("TIMEOUT_RTO")?,
            timeout_2msl: event("TIMEOUT_2MSL")?,
            shutdown: event("SHUTDOWN").ok(),
            timeout_connect: event("TIMEOUT_CONNECT").ok(),
            timeout_keepalive: event("TIMEOUT_KEEPALIVE").ok(),
        };
        let c = Contexts {
            passive: 0,
            active: 1,
            close: context_id("Closing.CLOSE"),
            shutdown: context_id("Closing.SHUTDOWN"),
        };
        Ok(Table {
            state_names,
            state_texts,
            event_names,
            event_values,
            context_names,
            plain,
            context,
            synchronized: sync,
            segment_event,
            specs: rows,
            s,
            e,
            c,
        })
    }

    /// Parse the TSV export of the model's table (`tests/data/transitions.tsv`).
    ///
    /// Lines: `state<TAB>name<TAB>text`, `event<TAB>name<TAB>value`,
    /// `synchronized<TAB>name`, `row<TAB>state<TAB>event<TAB>context|-<TAB>next<TAB>flags,...`.
    pub fn from_tsv(text: &str) -> Result<Table, String> {
        let mut states = Vec::new();
        let mut events = Vec::new();
        let mut sync = Vec::new();
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split('\t').collect();
            let bad = || format!("transitions line {}: {line:?}", n + 1);
            match f.as_slice() {
                ["state", name, text] => states.push((name.to_string(), text.to_string())),
                ["event", name, value] => events.push((name.to_string(), value.to_string())),
                ["synchronized", name] => sync.push(name.to_string()),
                ["row", state, event, context, next, send] => {
                    let send = send
                        .split(',')
                        .filter(|x| !x.is_empty())
                        .map(|x| x.parse::<u8>().map_err(|_| bad()))
                        .collect::<Result<Vec<u8>, String>>()?;
                    rows.push(RowSpec {
                        state: state.to_string(),
                        event: event.to_string(),
                        context: (*context != "-").then(|| context.to_string()),
                        next: next.to_string(),
                        send,
                    });
                }
                [""] => {}
                _ => return Err(bad()),
            }
        }
        Table::new(&states, &events, &sync, rows)
    }

    /// The rows this table was built from, resolved back to names (for the equality test).
    pub fn rows(&self) -> Vec<RowSpec> {
        let n_ev = self.event_names.len();
        let n_ctx = self.context_names.len();
        let mut out = Vec::new();
        for (si, sname) in self.state_names.iter().enumerate() {
            for (ei, ename) in self.event_names.iter().enumerate() {
                let at = si * n_ev + ei;
                let mut push = |row: &Option<Row>, context: Option<&str>| {
                    if let Some(row) = row {
                        out.push(RowSpec {
                            state: sname.clone(),
                            event: ename.clone(),
                            context: context.map(str::to_string),
                            next: self.state_names[usize::from(row.next)].clone(),
                            send: row.send.clone(),
                        });
                    }
                };
                push(&self.plain[at], None);
                for (k, name) in self.context_names.iter().enumerate() {
                    push(&self.context[at * n_ctx + k], Some(name));
                }
            }
        }
        out
    }

    /// The specs as handed over (kept for diagnostics).
    pub fn specs(&self) -> &[RowSpec] {
        &self.specs
    }

    /// The row for `(event, context)` in `state`, if the table has one.
    pub fn context_row(&self, state: StateId, event: EventId, context: u8) -> Option<&Row> {
        let at = usize::from(state) * self.event_names.len() + usize::from(event);
        let n_ctx = self.context_names.len();
        self.context
            .get(at * n_ctx + usize::from(context))
            .and_then(Option::as_ref)
    }

    /// The plain row for `event` in `state`, if the table has one.
    pub fn plain_row(&self, state: StateId, event: EventId) -> Option<&Row> {
        let at = usize::from(state) * self.event_names.len() + usize::from(event);
        self.plain.get(at).and_then(Option::as_ref)
    }

    pub fn is_synchronized(&self, state: StateId) -> bool {
        self.synchronized
            .get(usize::from(state))
            .copied()
            .unwrap_or(false)
    }

    pub fn state_text(&self, state: StateId) -> &str {
        self.state_texts
            .get(usize::from(state))
            .map_or("?", String::as_str)
    }

    pub fn event_value(&self, event: EventId) -> &str {
        self.event_values
            .get(usize::from(event))
            .map_or("?", String::as_str)
    }
}

/// A segment as the state machine sees it (the model's `Segment`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MSeg {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub length: u32,
}

impl MSeg {
    pub fn end_seq(&self) -> u32 {
        self.seq
            .wrapping_add(self.length)
            .wrapping_add(u32::from(self.flags & SYN != 0))
            .wrapping_add(u32::from(self.flags & FIN != 0))
    }
}

/// `format_flags` and `Segment.__str__` of the model (notes quote segments).
impl std::fmt::Display for MSeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ORDER: [(u8, &str); 6] = [
            (SYN, "SYN"),
            (FIN, "FIN"),
            (RST, "RST"),
            (PSH, "PSH"),
            (ACK, "ACK"),
            (URG, "URG"),
        ];
        let names: Vec<&str> = ORDER
            .iter()
            .filter(|(bit, _)| self.flags & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        let flags = if names.is_empty() {
            "none".to_string()
        } else {
            names.join("+")
        };
        write!(f, "{flags} seq={}", self.seq)?;
        if self.flags & ACK != 0 {
            write!(f, " ack={}", self.ack)?;
        }
        if self.length != 0 {
            write!(f, " len={}", self.length)?;
        }
        Ok(())
    }
}

/// Why a history entry was added: an event's value, or a fixed text.
#[derive(Clone, Debug, PartialEq)]
pub enum Cause {
    Event(EventId),
    Text(&'static str),
}

/// An event with no row: the model's `IllegalTransition` (nothing changed).
#[derive(Clone, Debug)]
pub struct Illegal {
    pub state: StateId,
    pub event: EventId,
    /// The segment, for a received one (`: segment ...` in the message).
    pub segment: Option<MSeg>,
}

impl Illegal {
    /// `str(IllegalTransition)`, as the Python reference writes it into notes.
    pub fn message(&self, table: &Table) -> String {
        let mut text = format!(
            "event {} is not allowed in state {}",
            table.event_value(self.event),
            table.state_text(self.state)
        );
        if let Some(seg) = self.segment {
            text.push_str(&format!(": segment {seg}"));
        }
        text
    }
}

/// One side of a connection, sans IO (the model's `Endpoint`; segments sent are not built).
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub state: StateId,
    pub isn: u32,
    pub msl: f64,
    /// `Opening` context id, once known.
    pub opening: Option<u8>,
    /// `Closing` context id: close() or shutdown(), once the application called one.
    pub closing: Option<u8>,
    pub history: Vec<(f64, StateId, Cause)>,
    pub timer_deadline: Option<f64>,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub rcv_nxt: Option<u32>,
    pub fin_seq: Option<u32>,
    pub peer_fin_seq: Option<u32>,
    /// End of the data sent with SEND; unacknowledged data is `snd_una .. data_end`.
    pub data_end: Option<u32>,
    out_of_order: Vec<MSeg>,
}

impl Endpoint {
    pub fn new(table: &Table, state: StateId, msl: f64, isn: u32, now: f64) -> Endpoint {
        // room for a handshake's states without growing (a lone SYN's flow is not
        // tracked until it gets a second packet, so few endpoints stop at two)
        let mut history = Vec::with_capacity(4);
        history.push((now, state, Cause::Text("initial")));
        Endpoint {
            state,
            isn,
            msl,
            opening: None,
            closing: None,
            history,
            timer_deadline: (state == table.s.time_wait).then_some(now + 2.0 * msl),
            snd_una: isn,
            snd_nxt: isn,
            rcv_nxt: None,
            fin_seq: None,
            peer_fin_seq: None,
            data_end: None,
            out_of_order: Vec::new(),
        }
    }

    fn acks_our_fin(&self, seg: &MSeg) -> bool {
        let Some(fin_seq) = self.fin_seq else {
            return false;
        };
        if seg.flags & ACK == 0 {
            return false;
        }
        let after_fin = fin_seq.wrapping_add(1);
        !seq_ge(self.snd_una, after_fin) && seq_ge(seg.ack, after_fin)
    }

    /// Name the event a segment is for this endpoint.
    pub fn classify(&self, t: &Table, seg: &MSeg) -> EventId {
        let e = &t.e;
        if seg.flags & RST != 0 {
            return e.rcv_rst;
        }
        if seg.flags & SYN != 0 {
            return if seg.flags & ACK != 0 {
                e.rcv_syn_ack
            } else {
                e.rcv_syn
            };
        }
        if seg.flags & FIN != 0 {
            return if self.acks_our_fin(seg) {
                e.rcv_fin_ack
            } else {
                e.rcv_fin
            };
        }
        if seg.flags & ACK != 0 {
            if self.state == t.s.syn_recv && seq_ge(seg.ack, self.isn.wrapping_add(1)) {
                return e.rcv_ack;
            }
            if self.acks_our_fin(seg) {
                return e.rcv_ack;
            }
        }
        e.rcv_data
    }

    /// Bytes sent with SEND and not yet acknowledged.
    pub fn unacked_data(&self) -> u32 {
        match self.data_end {
            Some(end) if seq_after(end, self.snd_una) => end.wrapping_sub(self.snd_una),
            _ => 0,
        }
    }

    /// Payload beyond `rcv_nxt`, what Linux resets after close().
    fn is_new_data(&self, seg: &MSeg) -> bool {
        match self.rcv_nxt {
            Some(r) => seg.length > 0 && seq_after(seg.seq.wrapping_add(seg.length), r),
            None => false,
        }
    }

    fn rst_acceptable(&self, t: &Table, seg: &MSeg) -> bool {
        if self.state == t.s.syn_sent {
            return seg.flags & ACK != 0 && seg.ack == self.snd_nxt;
        }
        match self.rcv_nxt {
            None => true,
            Some(r) => seg.seq.wrapping_sub(r) <= RCV_WINDOW,
        }
    }

    /// The row that applies now, or None; context keys win over plain ones.
    pub fn lookup<'t>(&self, t: &'t Table, event: EventId, seg: Option<&MSeg>) -> Option<&'t Row> {
        if let (Some(seg), Some(close)) = (seg, t.c.close) {
            if self.closing == Some(close) && Self::data_event(t, event) && self.is_new_data(seg) {
                if let Some(row) = t.context_row(self.state, event, close) {
                    return Some(row);
                }
            }
        }
        if let Some(o) = self.opening {
            if let Some(row) = t.context_row(self.state, event, o) {
                return Some(row);
            }
        }
        t.plain_row(self.state, event)
    }

    /// Events whose segment may carry data (the model's `_DATA_EVENTS`).
    fn data_event(t: &Table, event: EventId) -> bool {
        event == t.e.rcv_data || event == t.e.rcv_fin || event == t.e.rcv_fin_ack
    }

    /// Why a call or timer with a row still cannot happen now (None: it can).
    fn refused(&self, t: &Table, event: EventId, now: f64) -> bool {
        if event == t.e.timeout_2msl {
            match self.timer_deadline {
                Some(d) if now >= d => {}
                _ => return true,
            }
        }
        let give_up = t.e.timeout_connect;
        if self.state == t.s.established || self.state == t.s.close_wait {
            let unacked = self.unacked_data() > 0;
            if (event == t.e.timeout_rto || Some(event) == give_up) && !unacked {
                return true;
            }
            if Some(event) == t.e.timeout_keepalive && unacked {
                return true;
            }
        }
        Some(event) == give_up
            && self.state == t.s.fin_wait2
            && t.c.shutdown.is_some()
            && self.closing == t.c.shutdown
    }

    /// Whether `event` has a row in the current state and can happen now.
    pub fn can(&self, t: &Table, event: EventId, now: f64) -> bool {
        if self.lookup(t, event, None).is_none() {
            return false;
        }
        t.segment_event
            .get(usize::from(event))
            .copied()
            .unwrap_or(false)
            || !self.refused(t, event, now)
    }

    /// Apply an application call or a timer.
    pub fn handle(
        &mut self,
        t: &Table,
        event: EventId,
        now: f64,
        size: u32,
    ) -> Result<(), Illegal> {
        let illegal = Illegal {
            state: self.state,
            event,
            segment: None,
        };
        if t.segment_event
            .get(usize::from(event))
            .copied()
            .unwrap_or(true)
        {
            return Err(illegal);
        }
        let Some(row) = self.lookup(t, event, None).cloned() else {
            return Err(illegal);
        };
        if self.refused(t, event, now) {
            return Err(illegal);
        }
        if event == t.e.send && size == 0 {
            return Err(illegal);
        }
        self.apply(t, event, &row, now, None, size);
        Ok(())
    }

    /// `Endpoint._receive`: process a received segment already classified as `event`.
    pub fn receive(
        &mut self,
        t: &Table,
        seg: MSeg,
        now: f64,
        event: EventId,
    ) -> Result<(), Illegal> {
        if self.is_ahead(t, &seg) {
            self.out_of_order.push(seg);
            return Ok(());
        }
        self.receive_in_order(t, seg, now, Some(event))?;
        while let Some(rcv_nxt) = self.rcv_nxt {
            if self.out_of_order.is_empty() {
                break;
            }
            // A retransmission can cover what was held: drop what is now old.
            self.out_of_order
                .retain(|s| seq_after(s.end_seq(), rcv_nxt));
            let Some(i) = self.out_of_order.iter().position(|s| s.seq == rcv_nxt) else {
                break;
            };
            let ready = self.out_of_order.remove(i);
            self.receive_in_order(t, ready, now, None)?;
        }
        Ok(())
    }

    fn is_ahead(&self, t: &Table, seg: &MSeg) -> bool {
        let Some(rcv_nxt) = self.rcv_nxt else {
            return false;
        };
        if seg.seq == rcv_nxt {
            return false;
        }
        t.is_synchronized(self.state)
            && seg.flags & (SYN | RST) == 0
            && (seg.length > 0 || seg.flags & FIN != 0)
            && seq_ge(seg.seq, rcv_nxt)
    }

    fn receive_in_order(
        &mut self,
        t: &Table,
        seg: MSeg,
        now: f64,
        event: Option<EventId>,
    ) -> Result<(), Illegal> {
        let event = event.unwrap_or_else(|| self.classify(t, &seg));
        if event == t.e.rcv_rst && !self.rst_acceptable(t, &seg) {
            return Ok(());
        }
        let Some(row) = self.lookup(t, event, Some(&seg)).cloned() else {
            return Err(Illegal {
                state: self.state,
                event,
                segment: Some(seg),
            });
        };
        self.apply(t, event, &row, now, Some(&seg), 0);
        Ok(())
    }

    fn closed_or_listen(t: &Table, state: StateId) -> bool {
        state == t.s.closed || state == t.s.listen
    }

    fn apply(
        &mut self,
        t: &Table,
        event: EventId,
        row: &Row,
        now: f64,
        seg: Option<&MSeg>,
        size: u32,
    ) {
        if let Some(seg) = seg {
            self.absorb(t, event, seg);
        }
        if event == t.e.connect {
            self.opening = Some(t.c.active);
        } else if event == t.e.rcv_syn && self.state == t.s.listen {
            self.opening = Some(t.c.passive);
        } else if event == t.e.close {
            if t.c.close.is_some() {
                self.closing = t.c.close;
            }
        } else if Some(event) == t.e.shutdown && self.closing.is_none() {
            self.closing = t.c.shutdown;
        }
        for &flags in &row.send {
            self.emit(t, flags, event, seg, size);
        }
        let previous = self.state;
        self.state = row.next;
        if row.next == t.s.time_wait {
            if previous != t.s.time_wait || event == t.e.rcv_fin {
                self.timer_deadline = Some(now + 2.0 * self.msl);
            }
        } else {
            self.timer_deadline = None;
        }
        if Self::closed_or_listen(t, row.next) && previous != row.next {
            self.rcv_nxt = None;
            self.fin_seq = None;
            self.peer_fin_seq = None;
            self.out_of_order.clear();
            self.snd_una = self.isn;
            self.snd_nxt = self.isn;
            self.closing = None;
            self.data_end = None;
            if row.next == t.s.closed {
                self.opening = None;
            }
        }
        if row.next != previous {
            self.history.push((now, row.next, Cause::Event(event)));
        }
    }

    fn absorb(&mut self, t: &Table, event: EventId, seg: &MSeg) {
        if self.state == t.s.closed || (self.state == t.s.listen && event != t.e.rcv_syn) {
            return;
        }
        if seg.flags & SYN != 0 {
            self.rcv_nxt = Some(seg.seq.wrapping_add(1));
        } else if self.rcv_nxt == Some(seg.seq) {
            self.rcv_nxt = Some(seg.seq.wrapping_add(seg.length));
        }
        if seg.flags & FIN != 0 {
            let fin = seg.seq.wrapping_add(seg.length);
            if self.peer_fin_seq.is_none() {
                self.peer_fin_seq = Some(fin);
            }
            if self.rcv_nxt == Some(fin) {
                self.rcv_nxt = Some(fin.wrapping_add(1));
            }
        }
        if seg.flags & ACK != 0 && seq_ge(seg.ack, self.snd_una) {
            self.snd_una = seg.ack;
        }
    }

    /// The sequence bookkeeping of sending a segment (the segment itself is not needed).
    fn emit(&mut self, t: &Table, flags: u8, event: EventId, seg: Option<&MSeg>, size: u32) {
        if (Self::closed_or_listen(t, self.state) || Self::data_event(t, event))
            && flags & RST != 0
            && seg.is_some()
        {
            return; // a reply built from the segment: no numbers of ours spent
        }
        if (event == t.e.timeout_rto || (event == t.e.rcv_syn && self.state == t.s.syn_recv))
            && (flags & SYN != 0 || self.fin_seq.is_some() || self.unacked_data() > 0)
        {
            return; // a retransmission: numbers already spent
        }
        if flags & RST != 0 {
            return;
        }
        if flags & SYN != 0 {
            self.snd_una = self.isn;
            self.snd_nxt = self.isn.wrapping_add(1);
            return;
        }
        let length = if event == t.e.send { size } else { 0 };
        if flags & FIN != 0 {
            self.fin_seq = Some(self.snd_nxt.wrapping_add(length));
        }
        self.snd_nxt = self
            .snd_nxt
            .wrapping_add(length)
            .wrapping_add(u32::from(flags & FIN != 0));
        if length > 0 {
            self.data_end = Some(self.snd_nxt);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The model's table, as exported by `tcplens.model.machine` (held equal by a Python test).
    pub(crate) fn table() -> Table {
        match Table::from_tsv(include_str!("../tests/data/transitions.tsv")) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn tsv_round_trips_through_the_interned_table() {
        let t = table();
        let mut rows = t.rows();
        let mut specs = t.specs().to_vec();
        rows.sort_by(|a, b| {
            (&a.state, &a.event, &a.context).cmp(&(&b.state, &b.event, &b.context))
        });
        specs.sort_by(|a, b| {
            (&a.state, &a.event, &a.context).cmp(&(&b.state, &b.event, &b.context))
        });
        assert_eq!(rows, specs);
        assert!(rows.len() > 50);
    }

    #[test]
    fn handshake_and_active_close_reach_time_wait_then_closed() {
        let t = table();
        let mut c = Endpoint::new(&t, t.s.closed, 30.0, 100, 0.0);
        c.handle(&t, t.e.connect, 0.0, 0).ok();
        assert_eq!(c.state, t.s.syn_sent);
        let synack = MSeg {
            flags: SYN | ACK,
            seq: 900,
            ack: 101,
            length: 0,
        };
        let ev = c.classify(&t, &synack);
        assert_eq!(ev, t.e.rcv_syn_ack);
        c.receive(&t, synack, 1.0, ev).ok();
        assert_eq!(c.state, t.s.established);
        assert_eq!(c.rcv_nxt, Some(901));
        c.handle(&t, t.e.close, 2.0, 0).ok();
        assert_eq!(c.state, t.s.fin_wait1);
        assert_eq!(c.fin_seq, Some(101));
        let finack = MSeg {
            flags: FIN | ACK,
            seq: 901,
            ack: 102,
            length: 0,
        };
        let ev = c.classify(&t, &finack);
        assert_eq!(ev, t.e.rcv_fin_ack);
        c.receive(&t, finack, 3.0, ev).ok();
        assert_eq!(c.state, t.s.time_wait);
        assert_eq!(c.timer_deadline, Some(63.0));
        assert!(c.handle(&t, t.e.timeout_2msl, 62.0, 0).is_err());
        assert_eq!(c.state, t.s.time_wait);
        assert!(c.handle(&t, t.e.timeout_2msl, 63.0, 0).is_ok());
        assert_eq!(c.state, t.s.closed);
        let causes: Vec<&str> = c
            .history
            .iter()
            .map(|h| match &h.2 {
                Cause::Event(e) => t.event_value(*e),
                Cause::Text(x) => x,
            })
            .collect();
        assert_eq!(
            causes,
            [
                "initial",
                "connect",
                "rcv SYN+ACK",
                "close",
                "rcv FIN+ACK",
                "2MSL timeout"
            ]
        );
    }

    #[test]
    fn illegal_event_changes_nothing_and_names_state_and_segment() {
        let t = table();
        let mut c = Endpoint::new(&t, t.s.closed, 30.0, 5, 0.0);
        c.handle(&t, t.e.connect, 0.0, 0).ok();
        let before = c.clone();
        let syn = MSeg {
            flags: SYN | ACK | PSH,
            seq: 7,
            ack: 6,
            length: 3,
        };
        let err = c.receive(&t, syn, 1.0, t.e.rcv_syn_ack).err();
        assert!(err.is_none()); // SYN_SENT accepts SYN+ACK
        let mut d = before.clone();
        let fin = MSeg {
            flags: FIN,
            seq: 7,
            ack: 0,
            length: 0,
        };
        let err = d.receive(&t, fin, 1.0, t.e.rcv_fin);
        let msg = err.err().map(|e| e.message(&t));
        assert_eq!(
            msg.as_deref(),
            Some("event rcv FIN is not allowed in state SYN_SENT: segment FIN seq=7")
        );
        assert_eq!(d.state, before.state);
        assert_eq!(d.history.len(), before.history.len());
    }

    #[test]
    fn new_data_after_close_resets_but_after_shutdown_is_read() {
        let t = table();
        for (call, after) in [
            (t.e.close, t.s.closed),
            (t.e.shutdown.unwrap_or(t.e.close), t.s.fin_wait1),
        ] {
            let mut e = Endpoint::new(&t, t.s.established, 30.0, 10, 0.0);
            e.rcv_nxt = Some(1000);
            e.handle(&t, call, 1.0, 0).ok();
            assert_eq!(e.state, t.s.fin_wait1);
            let data = MSeg {
                flags: PSH | ACK,
                seq: 1000,
                ack: 10,
                length: 5,
            };
            let ev = e.classify(&t, &data);
            e.receive(&t, data, 2.0, ev).ok();
            assert_eq!(e.state, after);
        }
    }

    #[test]
    fn unacceptable_rst_is_ignored_and_out_of_order_fin_waits_for_the_gap() {
        let t = table();
        let mut s = Endpoint::new(&t, t.s.established, 30.0, 10, 0.0);
        s.rcv_nxt = Some(1000);
        let far = MSeg {
            flags: RST,
            seq: 1000 + RCV_WINDOW + 1,
            ack: 0,
            length: 0,
        };
        s.receive(&t, far, 1.0, t.e.rcv_rst).ok();
        assert_eq!(s.state, t.s.established);
        let fin = MSeg {
            flags: FIN | ACK,
            seq: 1010,
            ack: 11,
            length: 0,
        };
        s.receive(&t, fin, 2.0, t.e.rcv_fin).ok();
        assert_eq!(s.state, t.s.established); // held: 10 bytes missing
        let data = MSeg {
            flags: ACK,
            seq: 1000,
            ack: 11,
            length: 10,
        };
        s.receive(&t, data, 3.0, t.e.rcv_data).ok();
        assert_eq!(s.state, t.s.close_wait);
        assert_eq!(s.rcv_nxt, Some(1011));
    }
}
