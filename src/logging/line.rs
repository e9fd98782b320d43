//! [`Line`]: the text log line, written by hand.
//!
//! The same shape as `tracing-subscriber`'s default text format (`TIME
//! LEVEL target: message field=value ...`), for a fraction of its cost:
//! the date and time are formatted once a second per thread and only the
//! microseconds per line, strings are written in one piece rather than a
//! character at a time, and control characters are escaped only in the
//! values that hold one (checked a word at a time). Every relayed request
//! logs a line at the default level, so this is on the request path.
//!
//! Trade-off: no colours and no span context (keyhole opens no spans; the
//! dependencies' spans show at `trace` in the JSON format).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The text format. See the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Line;

thread_local! {
    /// The second last formatted on this thread, and its text
    /// (`YYYY-MM-DDTHH:MM:SS`).
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        timestamp(&mut w)?;
        w.write_str(level(meta.level()))?;
        w.write_str(meta.target())?;
        w.write_char(':')?;
        let mut fields = Fields {
            w: &mut w,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_char('\n')
    }
}

/// `2026-12-03T03:21:24.565354Z` (UTC, microseconds).
fn timestamp(w: &mut Writer<'_>) -> fmt::Result {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            cached.1 = date_time(secs);
            cached.0 = secs;
        }
        w.write_str(&cached.1)
    })?;
    let mut micros = [b'0'; 8];
    micros[0] = b'.';
    micros[7] = b'Z';
    let mut n = now.subsec_micros();
    for d in micros[1..7].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    w.write_str(std::str::from_utf8(&micros).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS` for a Unix time.
fn date_time(secs: u64) -> String {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The level, right-aligned in five columns between single spaces, as the
/// default format writes it.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    }
}

/// Writes the message, then `name=value` for every other field.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.w.write_char(' ')?;
            if field.name() != "message" {
                self.w.write_str(field.name())?;
                self.w.write_char('=')?;
            }
            let mut escaped = Escaped(&mut *self.w);
            escaped.write_fmt(value)
        })();
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.field(field, format_args!("{value}")),
            _ => self.field(field, format_args!("{value:?}")),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// Writes through to `0`, escaping control characters (a log line is one
/// line: a value cannot start another, nor carry terminal escapes).
struct Escaped<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if c.is_control() => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_and_time_as_the_default_format_writes_them() {
        assert_eq!(date_time(0), "1970-01-01T00:00:00");
        assert_eq!(date_time(1_796_266_884), "2026-12-03T03:01:24");
    }

    #[test]
    fn lines_have_the_default_shape_and_no_control_characters() {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Sink(sink.clone()))
            .event_format(Line)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(host = %"api.example.com", status = 200u16, scheme = "https", "request");
            tracing::warn!(value = %"a\nb\u{1b}[31m", "evil");
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (time, rest) = lines[0].split_at(27);
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        assert_eq!(
            rest,
            "  INFO keyhole::logging::line::tests: request host=api.example.com status=200 scheme=\"https\""
        );
        assert!(
            lines[1].ends_with("evil value=a\\nb\\u{1b}[31m"),
            "{}",
            lines[1]
        );
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
