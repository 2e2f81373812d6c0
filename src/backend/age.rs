//! age encryption of a replica's objects, as Litestream v0.3.13 does it (spec §1.6): each
//! object is `age_encrypt(LZ4 frame)`, binary age format, X25519 keys, names unchanged.
//!
//! [`AgeClient`] wraps any backend: with recipients, `put`/`put_file` encrypt; reads decrypt
//! every object that starts with age's header and pass other objects through unchanged (a
//! replica that was written before encryption was turned on stays readable). An encrypted
//! object without identities, or with none that matches, is an error that says which key
//! is missing. Keys never appear in `Debug`, logs or errors.
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::{ObjectInfo, ObjectStream, ReplicaClient};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// What every binary age file starts with.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// True when `data` starts like an age file.
pub fn is_age(data: &[u8]) -> bool {
    data.starts_with(AGE_MAGIC)
}

/// A replica client that encrypts what it writes and decrypts what it reads.
pub struct AgeClient {
    inner: Arc<dyn ReplicaClient>,
    recipients: Arc<Vec<age::x25519::Recipient>>,
    identities: Arc<Vec<age::x25519::Identity>>,
}

impl fmt::Debug for AgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeClient")
            .field("inner", &self.inner)
            .field("recipients", &self.recipients.len())
            .field("identities", &self.identities.len())
            .finish()
    }
}

impl AgeClient {
    /// Wraps `inner`. `recipients` hold age public keys (`age1...`), `identities` secret keys
    /// (`AGE-SECRET-KEY-1...`), one or more per entry (one per line, `#` comments skipped); a key that does
    /// not parse is an error that names its entry, never its text.
    pub fn new(
        inner: Arc<dyn ReplicaClient>,
        recipients: &[String],
        identities: &[Secret],
    ) -> Result<AgeClient> {
        let recipients = parse_keys(recipients.iter().map(String::as_str), |line, i| {
            age::x25519::Recipient::from_str(line).map_err(|_| {
                Error::Config(format!(
                    "age.recipients[{i}] holds a line that is not an age X25519 public key \
                     (age1...); Litestream v0.3.13 and walship take only those (age-keygen -y \
                     KEYFILE prints one)"
                ))
            })
        })?;
        let identities = parse_keys(identities.iter().map(Secret::expose), |line, i| {
            age::x25519::Identity::from_str(line).map_err(|_| {
                Error::Config(format!(
                    "age.identities[{i}] holds a line that is not an age X25519 secret key \
                     (AGE-SECRET-KEY-1...); Litestream v0.3.13 and walship take only those \
                     (age-keygen writes one)"
                ))
            })
        })?;
        Ok(AgeClient {
            inner,
            recipients: Arc::new(recipients),
            identities: Arc::new(identities),
        })
    }

    /// Whether new objects are encrypted (there is a recipient).
    pub fn encrypts(&self) -> bool {
        !self.recipients.is_empty()
    }

    /// Whether encrypted objects can be read (there is an identity).
    pub fn decrypts(&self) -> bool {
        !self.identities.is_empty()
    }

    fn object(&self, path: &str) -> String {
        format!("{}/{path}", self.inner.location())
    }

    fn encryptor(&self) -> Result<age::Encryptor> {
        age::Encryptor::with_recipients(self.recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| Error::Config(format!("age: cannot encrypt to the recipients: {e}")))
    }

    /// The error for an encrypted object this client cannot open.
    fn decrypt_error(&self, path: &str, e: age::DecryptError) -> Error {
        let object = self.object(path);
        match e {
            age::DecryptError::NoMatchingKeys if self.identities.is_empty() => {
                Error::NoKey(missing_identity(&object))
            }
            age::DecryptError::NoMatchingKeys => Error::NoKey(format!(
                "{object} is age-encrypted to a key that none of this replica's {} \
                 age.identities matches; add the identity that belongs to the recipients the \
                 replica was written with",
                self.identities.len()
            )),
            age::DecryptError::Io(io) => super::read_error(io, self.inner.type_name(), &object),
            other => Error::corrupt(object, format!("age: {other}")),
        }
    }

    fn identity_refs(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities.iter().map(|i| i as &dyn age::Identity)
    }

    /// Runs `f` on the blocking pool (encryption is CPU work).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(Error::task_failed("age worker"))
    }

    /// Decrypts a whole object held in memory (plaintext passes through).
    fn open(&self, path: &str, data: Bytes) -> Result<Bytes> {
        if !is_age(&data) {
            return Ok(data);
        }
        let d = age::Decryptor::new_buffered(&data[..]).map_err(|e| self.decrypt_error(path, e))?;
        let mut r = d
            .decrypt(self.identity_refs())
            .map_err(|e| self.decrypt_error(path, e))?;
        let mut out = Vec::with_capacity(data.len());
        r.read_to_end(&mut out)
            .map_err(|e| Error::corrupt(self.object(path), format!("age: cannot decrypt: {e}")))?;
        Ok(Bytes::from(out))
    }
}

/// Parses each entry as Litestream does (Go age's `ParseIdentities`/`ParseRecipients`): one
/// key per line, empty lines and `#` comments skipped, so the text of an `age-keygen` file
/// works as one entry. `parse` gets the line and the entry's index; its error must not
/// quote the line.
fn parse_keys<'a, T>(
    entries: impl Iterator<Item = &'a str>,
    parse: impl Fn(&str, usize) -> Result<T>,
) -> Result<Vec<T>> {
    let mut keys = Vec::new();
    for (i, entry) in entries.enumerate() {
        for line in entry.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                keys.push(parse(line, i)?);
            }
        }
    }
    Ok(keys)
}

/// The advice for an encrypted object read without any identity.
pub fn missing_identity(object: &str) -> String {
    format!(
        "{object} is age-encrypted and this replica has no age.identities: add the identity \
         (AGE-SECRET-KEY-1...) that belongs to the replica's recipients under age: identities: \
         in the config (restore needs it)"
    )
}

/// Encrypts `data` to `enc`'s recipients.
fn seal(enc: age::Encryptor, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() + 256);
    let mut w = enc.wrap_output(&mut out)?;
    w.write_all(data)?;
    w.finish()?;
    Ok(out)
}

#[async_trait]
impl ReplicaClient for AgeClient {
    fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn list(&self, dir: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(dir).await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let data = self.inner.get(path).await?;
        self.open(path, data)
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        let mut s = self.inner.get_stream(path).await?;
        // Enough of the body to tell an age file from a plain one.
        let mut head = BytesMut::new();
        while head.len() < AGE_MAGIC.len() {
            match s.body.next().await {
                Some(chunk) => head.extend_from_slice(&chunk?),
                None => break,
            }
        }
        let head = head.freeze();
        let encrypted = is_age(&head);
        let body = futures::stream::once(async move { Ok(head) })
            .chain(s.body)
            .boxed();
        if !encrypted {
            return Ok(ObjectStream { size: s.size, body });
        }
        let object = self.object(path);
        let backend = self.inner.type_name();
        let reader = tokio_util::io::StreamReader::new(body.map_err(std::io::Error::other));
        let d = age::Decryptor::new_async_buffered(tokio::io::BufReader::new(reader).compat())
            .await
            .map_err(|e| self.decrypt_error(path, e))?;
        let plain = d
            .decrypt_async(self.identity_refs())
            .map_err(|e| self.decrypt_error(path, e))?;
        let body = tokio_util::io::ReaderStream::new(plain.compat())
            .map_err(move |e| {
                if e.get_ref().is_some_and(|i| i.is::<Error>()) {
                    super::read_error(e, backend, &object)
                } else {
                    Error::corrupt(object.clone(), format!("age: cannot decrypt: {e}"))
                }
            })
            .boxed();
        Ok(ObjectStream { size: None, body })
    }

    // The lease is the replica's own bookkeeping, never encrypted: a replica with
    // recipients only must read it back.
    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }

    async fn lease_unsupported(&self) -> Result<Option<String>> {
        self.inner.lease_unsupported().await
    }

    fn conditional_object(&self, path: &str) -> String {
        self.inner.conditional_object(path)
    }

    async fn get_versioned(&self, path: &str) -> Result<Option<(Bytes, String)>> {
        self.inner.get_versioned(path).await
    }

    async fn put_if(
        &self,
        path: &str,
        data: Bytes,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        self.inner.put_if(path, data, expected).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectInfo> {
        if !self.encrypts() {
            return self.inner.put(path, data).await;
        }
        let enc = self.encryptor()?;
        let sealed = self
            .blocking(move || seal(enc, &data))
            .await?
            .map_err(Error::io("age-encrypt", path))?;
        self.inner.put(path, Bytes::from(sealed)).await
    }

    async fn put_file(&self, path: &str, local: &Path) -> Result<ObjectInfo> {
        if !self.encrypts() {
            return self.inner.put_file(path, local).await;
        }
        let enc = self.encryptor()?;
        let src = local.to_path_buf();
        // Beside the plain file, named *.tmp so a crash leaves nothing that start-up does not
        // clean.
        let sealed = self
            .blocking(move || -> std::io::Result<_> {
                let dir = src.parent().unwrap_or(Path::new("."));
                let tmp = tempfile::Builder::new()
                    .prefix(".age-")
                    .suffix(".tmp")
                    .tempfile_in(dir)?;
                let mut input = std::io::BufReader::new(std::fs::File::open(&src)?);
                let out = std::io::BufWriter::new(tmp.as_file().try_clone()?);
                let mut w = enc.wrap_output(out)?;
                std::io::copy(&mut input, &mut w)?;
                w.finish()?.flush()?;
                Ok(tmp)
            })
            .await?
            .map_err(Error::io("age-encrypt", local))?;
        self.inner.put_file(path, sealed.path()).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path).await
    }

    async fn delete_all(&self, dir: &str) -> Result<()> {
        self.inner.delete_all(dir).await
    }

    async fn delete_many(&self, paths: &[String]) -> Result<()> {
        self.inner.delete_many(paths).await
    }

    async fn read_only(&self) -> Result<bool> {
        self.inner.read_only().await
    }

    fn bodies_match_listed_sizes(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::file::FileClient;

    const PUBLIC: &str = "age162vu4dqq6l0k8z6p60kduud6fxq90me65k8tpplxgx4rqyad9fdsg293t9";
    const SECRET: &str =
        "AGE-SECRET-KEY-1N9EG8AY36NK2RNG76JPUAJL36KY244NN84KTS9UY7FN3XATML9MQX7C5WK";

    fn clients(dir: &Path) -> (Arc<FileClient>, AgeClient) {
        let file = Arc::new(FileClient::new(dir.to_path_buf()));
        let age = AgeClient::new(file.clone(), &[PUBLIC.into()], &[Secret::new(SECRET)]).unwrap();
        (file, age)
    }

    async fn stream_bytes(c: &dyn ReplicaClient, path: &str) -> Vec<u8> {
        let s = c.get_stream(path).await.unwrap();
        let chunks: Vec<Bytes> = s.body.try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn put_encrypts_and_both_reads_decrypt() {
        let dir = tempfile::tempdir().unwrap();
        let (file, age) = clients(dir.path());
        // Over several of age's 64 KiB chunks.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        age.put("a/b.lz4", Bytes::from(data.clone())).await.unwrap();
        let stored = file.get("a/b.lz4").await.unwrap();
        assert!(is_age(&stored));
        assert_ne!(&stored[..], &data[..]);
        assert_eq!(&age.get("a/b.lz4").await.unwrap()[..], &data[..]);
        assert_eq!(stream_bytes(&age, "a/b.lz4").await, data);

        let local = dir.path().join("local.bin");
        std::fs::write(&local, &data).unwrap();
        age.put_file("c.lz4", &local).await.unwrap();
        assert!(is_age(&file.get("c.lz4").await.unwrap()));
        assert_eq!(stream_bytes(&age, "c.lz4").await, data);
        // No temporary file is left beside the local one.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn plain_objects_pass_through_and_a_tampered_one_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (file, age) = clients(dir.path());
        file.put("plain", Bytes::from_static(b"\x04\x22\x4d\x18 plain"))
            .await
            .unwrap();
        assert_eq!(
            &age.get("plain").await.unwrap()[..],
            b"\x04\x22\x4d\x18 plain"
        );
        assert_eq!(stream_bytes(&age, "plain").await, b"\x04\x22\x4d\x18 plain");

        age.put("x", Bytes::from(vec![7u8; 1000])).await.unwrap();
        let mut stored = file.get("x").await.unwrap().to_vec();
        let last = stored.len() - 1;
        stored[last] ^= 1;
        file.put("x", Bytes::from(stored)).await.unwrap();
        assert!(matches!(age.get("x").await, Err(Error::Corrupt { .. })));
        let s = age.get_stream("x").await.unwrap();
        let r: Result<Vec<Bytes>> = s.body.try_collect().await;
        assert!(r.is_err(), "a tampered object decrypted");
    }

    #[test]
    fn debug_and_errors_never_show_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (_, age) = clients(dir.path());
        let d = format!("{age:?}");
        assert!(!d.contains(SECRET) && d.contains("identities: 1"), "{d}");
        let bad = "AGE-SECRET-KEY-1BROKENBROKEN";
        let file = Arc::new(FileClient::new(dir.path().to_path_buf()));
        let e = AgeClient::new(file, &[], &[Secret::new(format!("# comment\n\n{bad}"))])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("age.identities[0]") && !e.contains("BROKEN"),
            "{e}"
        );
    }
}
