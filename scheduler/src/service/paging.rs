//! Pages of search results, the same for every face: page sizes checked against their limits,
//! and opaque page tokens carrying the offset into the ordered results.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use drover_proto::ApiError;
use drover_proto::domain::Page;

/// A search's page size when none is asked for, and the largest it accepts (MLflow's).
#[derive(Clone, Copy, Debug)]
pub struct PageLimits {
    pub default: usize,
    pub max: usize,
}

pub const RUNS: PageLimits = PageLimits { default: 1000, max: 50_000 };
pub const EXPERIMENTS: PageLimits = PageLimits { default: 1000, max: 50_000 };

impl PageLimits {
    /// The page size for a request: the default when none is given, else the one asked for,
    /// which must lie between 1 and the maximum.
    pub fn check(self, requested: Option<i64>) -> Result<usize, ApiError> {
        match requested {
            None => Ok(self.default),
            Some(n) if n < 1 || n as u64 > self.max as u64 => Err(ApiError::InvalidArgument(
                format!("max_results must be between 1 and {}, got {n}", self.max),
            )),
            Some(n) => Ok(n as usize),
        }
    }
}

/// The offset a page token carries; an absent or empty token starts at the beginning.
pub fn offset(token: Option<&str>) -> Result<usize, ApiError> {
    let Some(token) = token.filter(|token| !token.is_empty()) else { return Ok(0) };
    let invalid = || ApiError::InvalidArgument(format!("invalid page token '{token}'"));
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let offset: u64 =
        text.strip_prefix("offset:").and_then(|n| n.parse().ok()).ok_or_else(invalid)?;
    // Tokens this scheduler makes never point past its largest search; a bigger offset was
    // crafted, and would wrap where a platform's usize is narrower.
    if offset > u64::from(u32::MAX) {
        return Err(invalid());
    }
    usize::try_from(offset).map_err(|_| invalid())
}

/// An offset given as a number (drover's own endpoints), refused past the largest search.
pub fn checked_offset(offset: u64) -> Result<usize, ApiError> {
    if offset > u64::from(u32::MAX) {
        return Err(ApiError::InvalidArgument(format!("offset {offset} is past any search")));
    }
    usize::try_from(offset)
        .map_err(|_| ApiError::InvalidArgument(format!("offset {offset} is past any search")))
}

fn token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

/// The page of `limit` items from `offset` in `items`, with the token of the next page when
/// there is more.
pub fn page<T, U>(
    items: &[T],
    offset: usize,
    limit: usize,
    mut convert: impl FnMut(&T) -> U,
) -> Page<U> {
    let end = offset.saturating_add(limit).min(items.len());
    let next_page_token = (end < items.len()).then(|| token(end));
    let items = items.get(offset..end).unwrap_or_default().iter().map(&mut convert).collect();
    Page { items, next_page_token }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        assert_eq!(offset(Some(&token(250))).unwrap(), 250);
        assert_eq!(offset(None).unwrap(), 0);
        assert_eq!(offset(Some("")).unwrap(), 0);
        assert!(offset(Some("garbage!")).is_err());
        assert!(offset(Some("250")).is_err(), "decimal offsets are not tokens");
        let crafted = URL_SAFE_NO_PAD.encode("offset:18446744073709551615");
        assert!(offset(Some(&crafted)).is_err(), "a crafted offset must not wrap around");
    }

    #[test]
    fn pages_end_with_no_token_and_survive_offsets_past_the_end() {
        let items: Vec<u32> = (0..5).collect();
        let first = page(&items, 0, 2, |n| *n);
        assert_eq!(first.items, vec![0, 1]);
        let next = offset(first.next_page_token.as_deref()).unwrap();
        let last = page(&items, next + 2, 2, |n| *n);
        assert_eq!((last.items, last.next_page_token), (vec![4], None));
        assert!(page(&items, 9, 2, |n| *n).items.is_empty());
    }

    #[test]
    fn page_sizes_outside_the_limits_are_refused() {
        assert_eq!(RUNS.check(None).unwrap(), 1000);
        assert_eq!(RUNS.check(Some(50_000)).unwrap(), 50_000);
        for bad in [0, -1, 50_001, i64::MAX] {
            let error = RUNS.check(Some(bad)).unwrap_err();
            assert!(error.to_string().contains("between 1 and 50000"), "{error}");
        }
    }
}
