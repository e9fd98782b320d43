//! List queries (`limit`, `page`, `include_archived`) and pagination.
//!
//! `next_page` is opaque to clients: base64url of `v1:OFFSET:ID`, the
//! position just past the page and the id of its last object. The next
//! page starts after that id when it still exists (so a create or delete
//! in between neither repeats nor skips objects), else where that id stood
//! (it was deleted; objects are only ever appended, so what followed it
//! moved up by one).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::error::ApiError;

/// Page size when `limit` is not given (vault API).
pub const DEFAULT_LIMIT: usize = 20;
/// Largest `limit` accepted (vault API).
pub const MAX_LIMIT: usize = 100;
/// Longest `page` cursor accepted, in characters.
pub const MAX_CURSOR_LEN: usize = 512;

/// A list request's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// The decoded `page` cursor.
    pub after: Option<Cursor>,
    /// Whether archived objects are listed too.
    pub include_archived: bool,
}

/// A decoded `next_page`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    offset: usize,
    id: String,
}

// === impl ListQuery ===

impl ListQuery {
    /// Parses a query string; unknown parameters are ignored.
    pub fn parse(query: Option<&str>) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery {
            limit: DEFAULT_LIMIT,
            after: None,
            include_archived: false,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            match key {
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::Invalid(format!(
                                "limit: {value:?} is not a number from 1 to {MAX_LIMIT}; leave it out for {DEFAULT_LIMIT}"
                            ))
                        })?;
                }
                "page" if !value.is_empty() => q.after = Some(Cursor::decode(&value)?),
                "include_archived" => {
                    q.include_archived = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" | "" => false,
                        other => {
                            return Err(ApiError::Invalid(format!(
                                "include_archived: {other:?} is not a boolean; send true or false"
                            )))
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// The page of `items` (in order, ids by `id`) this query asks for, and
    /// the cursor of the next page when there are more.
    pub fn page<'a, T>(
        &self,
        items: &'a [T],
        id: impl Fn(&T) -> &str,
    ) -> (&'a [T], Option<String>) {
        let start = match &self.after {
            None => 0,
            Some(c) => items
                .iter()
                .position(|x| id(x) == c.id)
                .map_or(c.offset.saturating_sub(1), |i| i + 1),
        }
        .min(items.len());
        let end = start.saturating_add(self.limit).min(items.len());
        let page = items.get(start..end).unwrap_or(&[]);
        let next = match page.last() {
            Some(last) if end < items.len() => Some(
                Cursor {
                    offset: end,
                    id: id(last).to_owned(),
                }
                .encode(),
            ),
            _ => None,
        };
        (page, next)
    }
}

// === impl Cursor ===

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", self.offset, self.id))
    }

    fn decode(s: &str) -> Result<Cursor, ApiError> {
        let bad = || {
            ApiError::Invalid(
                "page: not a cursor keyhole gave out; send the next_page value of the previous list response, or leave page out for the first page".into(),
            )
        };
        if s.len() > MAX_CURSOR_LEN {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let rest = text.strip_prefix("v1:").ok_or_else(bad)?;
        let (offset, id) = rest.split_once(':').ok_or_else(bad)?;
        Ok(Cursor {
            offset: offset.parse().map_err(|_| bad())?,
            id: id.to_owned(),
        })
    }
}

/// Percent-decodes a query value (`+` is a space, as in forms).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| {
            bytes
                .get(j)
                .and_then(|c| char::from(*c).to_digit(16))
                .map(|d| d as u8)
        };
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi * 16 + lo);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("id{i}")).collect()
    }

    #[test]
    fn defaults_and_limits() {
        let q = ListQuery::parse(None).unwrap();
        assert_eq!(q.limit, 20);
        assert!(!q.include_archived);
        let q = ListQuery::parse(Some("limit=100&include_archived=true&beta=true")).unwrap();
        assert_eq!(q.limit, 100);
        assert!(q.include_archived);
        for bad in [
            "limit=101",
            "limit=0",
            "limit=x",
            "include_archived=yes",
            "page=%%%",
        ] {
            assert!(ListQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_cover_everything_once() {
        let items = ids(5);
        let mut q = ListQuery::parse(Some("limit=2")).unwrap();
        let mut seen = Vec::new();
        loop {
            let (page, next) = q.page(&items, |s| s.as_str());
            seen.extend(page.iter().cloned());
            match next {
                Some(c) => q = ListQuery::parse(Some(&format!("limit=2&page={c}"))).unwrap(),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn a_deleted_cursor_id_resumes_where_it_stood() {
        let items = ids(5);
        let q = ListQuery::parse(Some("limit=2")).unwrap();
        let (_, next) = q.page(&items, |s| s.as_str());
        let q = ListQuery::parse(Some(&format!("limit=2&page={}", next.unwrap()))).unwrap();
        let fewer: Vec<String> = items.iter().filter(|s| *s != "id1").cloned().collect();
        let (page, _) = q.page(&fewer, |s| s.as_str());
        assert_eq!(page, ["id2", "id3"]);
        // Exactly a page: no next cursor.
        let (page, next) = ListQuery::parse(Some("limit=5"))
            .unwrap()
            .page(&items, |s| s.as_str());
        assert_eq!((page.len(), next), (5, None));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%20b+c%2"), "a b c%2");
    }
}
