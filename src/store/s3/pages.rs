//! ListObjectsV2 requests and answers: one page asked for (`S3Store::list_answer`), its token
//! read from the answer's text before decoding (`token_in`), and the answer decoded
//! (`decode_page`). `S3Store` answers `ObjectStore::list_pages` with `decoded_behind`, which
//! asks for the next page on the token read before it decodes the page (see `store::pages`).
//!
//! Reading the token from the text is exact when it finds one: element names cannot appear
//! inside XML text (a `<` in a key or token is escaped), so `<NextContinuationToken>` is the
//! element wherever it is in the answer. A token holding an escape (`&`) is not read here:
//! the decoded page gives it.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use s3::command::Command;
use s3::error::S3Error;
use s3::request::tokio_backend::ReqwestRequest;
use s3::request::Request as _;
use s3::serde_types::ListBucketResult;

use super::convert::parse_iso_time;
use super::errors::map_s3_error;
use super::listing_encoding::Names;
use super::S3Store;
use crate::store::pages::{PageAnswers, PagedList, PAGE_KEYS};
use crate::store::retry::{with_retries, Call};
use crate::store::{BadResponse, ListPage, ListedObject, StoreError, StoreResult};

impl S3Store {
    /// The answer to one ListObjectsV2 request, as it came (`decode_page` reads it).
    pub(super) async fn list_answer(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        start_after: Option<&str>,
        max_keys: usize,
    ) -> StoreResult<Bytes> {
        let max_keys = max_keys.max(1);
        let latency = match max_keys {
            1 => &self.latency.list_probe,
            _ => &self.latency.list_page,
        };
        let token = &token;
        with_retries(
            &self.retry,
            Call::small(&format!("ListObjectsV2 {prefix}"))
                .hedged(latency)
                .counted(&self.stats, "ListObjectsV2", 0),
            move || async move {
                let command = Command::ListObjectsV2 {
                    prefix: prefix.to_string(),
                    delimiter: delimiter.map(str::to_string),
                    continuation_token: token.clone(),
                    start_after: start_after.map(str::to_string),
                    max_keys: Some(max_keys),
                };
                let request = ReqwestRequest::new(&self.list_bucket, "/", command)
                    .await
                    .map_err(map_s3_error)?;
                let answer = request.response_data(false).await.map_err(map_s3_error)?;
                Ok(answer.into_bytes())
            },
        )
        .await
    }
}

impl PageAnswers for S3Store {
    type Answer = Bytes;

    fn ask(
        self: &Arc<Self>,
        list: &PagedList,
        token: Option<String>,
    ) -> impl Future<Output = StoreResult<Bytes>> + Send + 'static {
        let (store, list) = (self.clone(), list.clone());
        async move {
            // StartAfter names where the listing starts; the token, where it goes on.
            let start_after = list.start_after.as_deref().filter(|_| token.is_none());
            let delimiter = list.delimiter.as_deref();
            store
                .list_answer(&list.prefix, delimiter, token, start_after, PAGE_KEYS)
                .await
        }
    }

    fn token_in(answer: &Bytes) -> Option<String> {
        token_in(answer)
    }

    fn last_key_in(answer: &Bytes) -> Option<String> {
        last_key_in(answer)
    }

    fn decode(&self, answer: Bytes) -> StoreResult<ListPage> {
        decode_page(&answer)
    }
}

/// The text of the first (or `last`) element `name` of `answer`, if it holds no escape.
fn element_text<'a>(answer: &'a [u8], name: &str, last: bool) -> Option<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let at = match last {
        false => memchr::memmem::find(answer, open.as_bytes())?,
        true => memchr::memmem::rfind(answer, open.as_bytes())?,
    } + open.len();
    let len = memchr::memmem::find(&answer[at..], close.as_bytes())?;
    let text = std::str::from_utf8(&answer[at..at + len]).ok()?;
    (!text.contains('&')).then_some(text)
}

/// The `NextContinuationToken` of a ListObjectsV2 answer, read without decoding it; `None`
/// when there is none, or it is empty or escaped.
pub(super) fn token_in(answer: &[u8]) -> Option<String> {
    let token = element_text(answer, "NextContinuationToken", false)?;
    (!token.is_empty()).then(|| token.to_string())
}

/// The last key of a ListObjectsV2 answer, read without decoding the answer (its own
/// encoding decoded); `None` when there is none, or it is escaped.
pub(super) fn last_key_in(answer: &[u8]) -> Option<String> {
    let key = element_text(answer, "Key", true)?;
    let names = Names::of_answer(element_text(answer, "EncodingType", false));
    names.decode(key.to_string()).ok()
}

/// A ListObjectsV2 answer as a page: keys and prefixes decoded (`listing_encoding`), and a
/// truncated page must name its token.
pub(super) fn decode_page(answer: &[u8]) -> StoreResult<ListPage> {
    let result: ListBucketResult =
        quick_xml::de::from_reader(answer).map_err(|e| map_s3_error(S3Error::from(e)))?;
    let next_token = if result.is_truncated {
        match result.next_continuation_token {
            Some(t) if !t.is_empty() => Some(t),
            _ => {
                return Err(StoreError::BadResponse(BadResponse::TruncatedWithout {
                    request: "ListObjectsV2",
                    missing: "NextContinuationToken",
                }))
            }
        }
    } else {
        None
    };
    let names = Names::of_answer(result.encoding_type.as_deref());
    Ok(ListPage {
        objects: result
            .contents
            .into_iter()
            .map(|o| {
                Ok(ListedObject {
                    last_modified: parse_iso_time(&o.last_modified),
                    key: names.decode(o.key)?,
                    size: o.size,
                    etag: o.e_tag.filter(|e| !e.is_empty()),
                })
            })
            .collect::<StoreResult<_>>()?,
        prefixes: result
            .common_prefixes
            .unwrap_or_default()
            .into_iter()
            .map(|p| names.decode(p.prefix))
            .collect::<Result<_, _>>()?,
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::{last_key_in, token_in};

    #[test]
    fn the_token_is_read_wherever_the_answer_puts_it() {
        let before = b"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>AbC+/=</NextContinuationToken><Contents><Key>k</Key></Contents></ListBucketResult>";
        let after = b"<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>k</Key></Contents><NextContinuationToken>AbC+/=</NextContinuationToken></ListBucketResult>";
        assert_eq!(token_in(before).as_deref(), Some("AbC+/="));
        assert_eq!(token_in(after).as_deref(), Some("AbC+/="));
    }

    #[test]
    fn no_token_is_read_from_a_last_page_or_an_escaped_or_empty_one() {
        let last = b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>k</Key></Contents></ListBucketResult>";
        let escaped = b"<ListBucketResult><NextContinuationToken>a&amp;b</NextContinuationToken></ListBucketResult>";
        let empty =
            b"<ListBucketResult><NextContinuationToken></NextContinuationToken></ListBucketResult>";
        let cut = b"<ListBucketResult><NextContinuationToken>abc";
        for answer in [&last[..], escaped, empty, cut] {
            assert_eq!(
                token_in(answer),
                None,
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn the_last_key_is_read_in_the_answers_encoding() {
        let garage = b"<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>t%2Fd1%2Fa</Key></Contents><Contents><Key>t%2Fd2%2Fb%20c</Key></Contents></ListBucketResult>";
        let plain = b"<ListBucketResult><Contents><Key>t/a</Key></Contents><Contents><Key>t/b</Key></Contents></ListBucketResult>";
        let escaped =
            b"<ListBucketResult><Contents><Key>t/a&amp;b</Key></Contents></ListBucketResult>";
        let none = b"<ListBucketResult><CommonPrefixes><Prefix>t/</Prefix></CommonPrefixes></ListBucketResult>";
        assert_eq!(last_key_in(garage).as_deref(), Some("t/d2/b c"));
        assert_eq!(last_key_in(plain).as_deref(), Some("t/b"));
        assert_eq!(last_key_in(escaped), None);
        assert_eq!(last_key_in(none), None);
    }
}
