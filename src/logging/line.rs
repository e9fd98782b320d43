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
    /// Writes ` name=` (just the space for the message), then the value
    /// by `value`; after a failed write, nothing more.
    fn write(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            self.w.write_char(' ')?;
            if field.name() != "message" {
                self.w.write_str(field.name())?;
                self.w.write_char('=')?;
            }
            value(self.w)
        })();
    }

    /// A formatted value, its control characters escaped.
    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        self.write(field, |w| Escaped(w).write_fmt(value));
    }

    /// `pieces` as they are: the caller knows they hold no control
    /// character. Numbers and plain strings take this way, without the
    /// formatting machinery.
    fn plain(&mut self, field: &Field, pieces: &[&str]) {
        self.write(field, |w| pieces.iter().try_for_each(|p| w.write_str(p)));
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // Printable ASCII without quote or backslash is its own Debug form.
        let plain = value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        match (field.name(), plain) {
            ("message", true) => self.plain(field, &[value]),
            ("message", false) => self.field(field, format_args!("{value}")),
            (_, true) => self.plain(field, &["\"", value, "\""]),
            (_, false) => self.field(field, format_args!("{value:?}")),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        let mut digits = [0u8; 20];
        self.plain(field, &[decimal(value, &mut digits)]);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let mut digits = [0u8; 20];
        let sign = if value < 0 { "-" } else { "" };
        self.plain(field, &[sign, decimal(value.unsigned_abs(), &mut digits)]);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.plain(field, &[if value { "true" } else { "false" }]);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"));
    }
}

/// `n` in decimal, written into the end of `buf` (20 digits hold any u64).
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or("?")
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
    fn numbers_are_written_in_decimal() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), "0");
        assert_eq!(decimal(200, &mut buf), "200");
        assert_eq!(decimal(u64::MAX, &mut buf), u64::MAX.to_string());
    }

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
            tracing::info!(
                quoted = "say \"hi\"\n",
                n = -12i64,
                yes = true,
                "odd {}",
                "message\r"
            );
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
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
        assert!(
            lines[2].ends_with(r#"odd message\r quoted="say \"hi\"\n" n=-12 yes=true"#),
            "{}",
            lines[2]
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
