//! What capture loses, and what the parser still reads exactly: payloads
//! cut by the capture (framing kept), frame headers past it and sequence
//! gaps (framing lost until a syscall starts with frames), header blocks
//! cut (the dynamic table lost: only exact fields read, none guessed), and
//! the stream table under those losses.

use loona_hpack::Encoder;

use super::{
    Http2, frame,
    tests::{Q, R, Seg, Wire, attr, data, feed, frame, h2, preface, summary},
};
use crate::{
    protocols::{Exchange, ParserCounts, ProtocolParser, Segment},
    span::{Key, SpanKind, Value},
};

#[test]
fn uncaptured_bodies_keep_the_framing() {
    let mut w = Wire::new();
    let head = w.status(1, "200", false);
    let run = feed(&[
        (Q, [preface(), w.get(1, "/big")].concat(), None),
        (R, [head.clone(), data(1, 8000, true)].concat(), Some(head.len() + 20)), // cut inside the DATA
        (Q, w.get(3, "/next"), None),
        (R, w.status(3, "200", true), None),
    ]);
    run.expect(&["1 GET /big -> 200 | grpc=- | body 0/8000 |", "3 GET /next -> 200 | grpc=- | body 0/0 |"]);
    assert_eq!(run.counts, ParserCounts::default());
}

#[test]
fn an_uncaptured_frame_header_loses_the_framing_until_a_syscall_starts_with_frames() {
    let mut w = Wire::new();
    let head = w.status(1, "200", false);
    let run = feed(&[
        (Q, [preface(), w.get(1, "/big")].concat(), None),
        // The second DATA's header is past the capture.
        (R, [head.clone(), data(1, 5000, false), data(1, 3000, true)].concat(), Some(head.len() + 20)),
        (Q, w.get(3, "/next"), None),
        (R, w.status(3, "200", true), None),
    ]);
    // Stream 3 opened while the answers were out of step: some of its
    // DATA may have been in frames never read, so its size is not known.
    run.expect(&["3 GET /next -> 200 | grpc=- | body 0/- |", "1 GET /big -> 200 | grpc=- | body 0/- | incomplete"]);
    assert_eq!(run.counts, ParserCounts { malformed: 1, ..Default::default() });
}

#[test]
fn a_stream_open_while_frames_were_lost_is_not_called_unanswered() {
    let mut w = Wire::new();
    let head = w.status(1, "200", false);
    let run = feed(&[
        (Q, [preface(), w.get(1, "/a"), w.get(3, "/b")].concat(), None),
        (R, [head.clone(), data(1, 3000, true), w.status(3, "200", true)].concat(), Some(head.len() + 9)),
    ]);
    run.expect(&[
        "1 GET /a -> 200 | grpc=- | body 0/3000 |",
        "3 GET /b -> 0 | grpc=- | body 0/- | incomplete resp_cut",
    ]);
    assert_eq!(run.span(1, SpanKind::Client).error_type, None);
}

#[test]
fn a_stream_whose_response_head_was_lost_still_ends() {
    let mut w = Wire::new();
    let head = w.status(1, "200", false);
    let run = feed(&[
        (Q, [preface(), w.get(1, "/a"), w.get(3, "/b")].concat(), None),
        // A read of both answers captured only up to stream 1's DATA: the
        // HEADERS of stream 3 is lost, its DATA comes in the next read.
        (R, [head.clone(), data(1, 3000, true), w.status(3, "404", false)].concat(), Some(head.len() + 9)),
        (R, data(3, 10, true), None),
    ]);
    run.expect(&["1 GET /a -> 200 | grpc=- | body 0/3000 |", "3 GET /b -> 0 | grpc=- | body 0/- | resp_cut"]);
    let d = run.span(1, SpanKind::Client);
    assert_eq!(attr(&d, &Key::HttpResponseStatusCode), None, "never guessed");
    assert_eq!(d.error_type, None);
}

/// A request with a header whose name is in no table: the encoder indexes
/// it, and later requests name it by its index in the dynamic table.
fn tagged(w: &mut Wire, stream: u32, path: &str) -> Vec<u8> {
    w.headers(Q, stream, &[(":method", "GET"), (":scheme", "http"), (":path", path), ("x-tag", "t1")], true)
}

#[test]
fn a_cut_header_block_loses_the_table_but_not_the_streams() {
    let mut w = Wire::new();
    let req1 = tagged(&mut w, 1, "/first");
    let cut = preface().len() + req1.len() - 2; // inside the x-tag literal
    let run = feed(&[
        (Q, [preface(), req1].concat(), Some(cut)),
        (R, w.status(1, "200", true), None),
        // x-tag is now an entry of the client's table, named by index: not
        // readable; the literals before it are.
        (Q, tagged(&mut w, 3, "/second"), None),
        (R, w.status(3, "204", true), None),
        // Only static names and literals: every field is read, exactly.
        (Q, w.headers(Q, 5, &[(":method", "DELETE"), (":path", "/fresh")], true), None),
        (R, w.status(5, "200", true), None),
    ]);
    run.expect(&[
        "1 GET /first -> 200 | grpc=- | body 0/0 | req_cut",
        "3 GET /second -> 204 | grpc=- | body 0/0 | req_cut",
        "5 DELETE /fresh -> 200 | grpc=- | body 0/0 |",
    ]);
    assert_eq!(run.counts, ParserCounts { malformed: 2, ..Default::default() });
    let d = run.span(1, SpanKind::Server);
    assert_eq!(attr(&d, &Key::TracerRequestHeadTruncated), Some(&Value::from("true")));
}

#[test]
fn a_lost_table_comes_back_after_a_size_update_to_zero() {
    let mut w = Wire::new();
    let req1 = tagged(&mut w, 1, "/one");
    let cut = preface().len() + req1.len() - 2;
    let req2 = tagged(&mut w, 3, "/two");
    // The client empties its table (0x20), restores its size (4096), and
    // sends literals again.
    w.req = Encoder::new();
    let mut b = vec![0x20, 0x3f, 0xe1, 0x1f];
    b.extend(w.block(Q, &[(":method", "GET"), (":scheme", "http"), (":path", "/three"), ("x-tag", "t1")]));
    let run = feed(&[
        (Q, [preface(), req1].concat(), Some(cut)),
        (R, w.status(1, "200", true), None),
        (Q, req2, None),
        (R, w.status(3, "200", true), None),
        (Q, frame(frame::HEADERS, frame::END_HEADERS | frame::END_STREAM, 5, &b), None),
        (R, w.status(5, "200", true), None),
        (Q, tagged(&mut w, 7, "/four"), None), // x-tag indexed into the rebuilt table
        (R, w.status(7, "200", true), None),
    ]);
    run.expect(&[
        "1 GET /one -> 200 | grpc=- | body 0/0 | req_cut",
        "3 GET /two -> 200 | grpc=- | body 0/0 | req_cut",
        "5 GET /three -> 200 | grpc=- | body 0/0 |",
        "7 GET /four -> 200 | grpc=- | body 0/0 |",
    ]);
    assert_eq!(run.counts.malformed, 2);
}

#[test]
fn a_sequence_gap_loses_the_framing_instead_of_misreading_it() {
    let mut w = Wire::new();
    let mut p = Http2::new(Default::default());
    let mut out = Vec::new();
    let seg = |p: &mut Http2, side, bytes: &[u8], seq, out: &mut Vec<Exchange>| {
        let s = Segment { ts_ns: seq as u64, bytes: bytes.len() as u32, payload: bytes, seq: Some(seq), tid: 1 };
        p.feed(side, &s, out);
    };
    let req = [preface(), w.get(1, "/a"), w.get(3, "/b")].concat();
    seg(&mut p, Q, &req, 0, &mut out);
    let head = w.status(1, "200", false);
    let body = data(1, 100, false);
    seg(&mut p, R, &[head.clone(), body[..50].to_vec()].concat(), 10_000, &mut out);
    // The syscall with the rest of the DATA and stream 1's end was dropped
    // on the way: this one starts with stream 3's answer, 57 bytes later.
    let end1 = data(1, 0, true);
    let gap = (body.len() - 50 + end1.len()) as u32;
    seg(&mut p, R, &w.status(3, "200", true), 10_000 + (head.len() + 50) as u32 + gap, &mut out);
    p.close(&mut out);
    let lines: Vec<String> = out.iter().map(summary).collect();
    // Stream 3 was open across the gap too: its body size is not known.
    assert_eq!(lines, ["3 GET /b -> 200 | grpc=- | body 0/- |", "1 GET /a -> 200 | grpc=- | body 0/- | incomplete"]);
    assert_eq!(p.take_counts().malformed, 1);
}

#[test]
fn streams_opened_while_responses_are_out_of_step_can_make_room() {
    // The response direction loses its framing; every stream opened before
    // it resumes may have its end there: they are the ones evicted when the
    // table is full, so streams opened later are still followed.
    let mut w = Wire::new();
    let n = super::streams::MAX_STREAMS as u32;
    let head = w.status(1, "200", false);
    let mut segs: Vec<Seg> = vec![(Q, [preface(), w.get(1, "/first")].concat(), None)];
    // The second DATA's header is past the capture.
    segs.push((R, [head.clone(), data(1, 3000, false), data(1, 10, true)].concat(), Some(head.len() + 9 + 10)));
    let mut req = Vec::new();
    for i in 1..=n {
        req.extend(w.get(2 * i + 1, "/while-lost"));
    }
    segs.push((Q, req, None));
    segs.push((Q, w.get(2 * n + 3, "/after"), None));
    segs.push((R, w.status(2 * n + 3, "200", true), None)); // a syscall that starts with a frame: resumed
    let run = feed(&segs);
    let after = run.ex.iter().find(|e| h2(e).stream == 2 * n + 3).expect("the stream opened last is followed");
    assert_eq!(h2(after).http.response.as_ref().map(|r| r.status), Some(200));
    assert_eq!(run.ex.len(), n as usize + 2, "every stream is an exchange, evicted ones too");
    assert_eq!(run.counts.overflow, 2, "two streams evicted to make room");
}
