"""Streams in S3 or any S3-compatible object store (``s3://bucket/prefix``): the check before a run, reading the
stream's small files, and uploading a stream that ``python -m frossl_lit.prepare out=s3://…`` wrote.

Where and as whom is boto3's standard configuration, nothing of this project's: the endpoint from
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (or ``endpoint_url`` in ``~/.aws/config``; unset: AWS itself), the
credentials from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``), ``AWS_PROFILE`` and
``~/.aws/credentials``, or an instance role, the region from ``AWS_DEFAULT_REGION`` / ``AWS_REGION`` or the profile.
LitData's own S3 client (the chunks) builds its boto3 client the same way, so both see the same endpoint.

:func:`check` asks the store once, with a short connect timeout and no retries, before any conversion or training
starts, and turns what can be wrong (no credentials, rejected credentials, an endpoint that does not answer, a
missing bucket) into one :class:`~frossl_lit.runtime.errors.UserError` line that names the fix; LitData's client
retries for a long time and would otherwise hang on any of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frossl_lit.runtime.errors import UserError

CONNECT_TIMEOUT_S = 5  # the check's and the small files' connect and read timeouts
ENDPOINT_HELP = "AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (or endpoint_url in ~/.aws/config; unset for AWS itself)"
CREDENTIALS_HELP = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE with its keys in ~/.aws/credentials"


def is_s3(location: str) -> bool:
    return str(location).startswith("s3://")


def bucket_and_key(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    bucket, _, key = url[len("s3://") :].partition("/")
    return bucket, key.strip("/")


def client(attempts: int = 1, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """A boto3 S3 client configured the standard way (environment, ``~/.aws``), that gives up after ``attempts``."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    config = Config(connect_timeout=timeout, read_timeout=max(timeout, 60 if attempts > 1 else timeout),
                    retries={"max_attempts": attempts, "mode": "standard"})
    try:
        return boto3.session.Session().client("s3", config=config)
    except (BotoCoreError, ValueError) as error:  # a profile that does not exist, an endpoint that is no URL
        raise UserError(f"the AWS configuration is invalid: {error} (check AWS_PROFILE, {ENDPOINT_HELP})") from None


def endpoint_of(s3) -> str:
    return s3.meta.endpoint_url


def check(url: str) -> None:
    """Raise one clear :class:`UserError` unless the endpoint answers, accepts the credentials and holds ``url``'s
    bucket (the prefix may be empty). Also lets LitData's chunk downloads use a plain-``http://`` endpoint."""
    from botocore import exceptions as boto

    bucket, prefix = bucket_and_key(url)
    if not bucket:
        raise UserError(f"{url} names no bucket: write s3://<bucket>/<prefix>")
    s3 = client()
    endpoint = endpoint_of(s3)
    try:
        s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
    except (boto.NoCredentialsError, boto.PartialCredentialsError):
        raise UserError(f"{url}: no AWS credentials found: set {CREDENTIALS_HELP}") from None
    except (boto.ConnectionError, boto.HTTPClientError) as error:
        raise UserError(
            f"{url}: cannot reach the S3 endpoint {endpoint} ({type(error).__name__}): set {ENDPOINT_HELP} to your "
            f"object store's address (e.g. http://minio.local:9000), and check that it is up"
        ) from None
    except boto.ClientError as error:
        raise _client_error(url, bucket, endpoint, error) from None
    except boto.BotoCoreError as error:
        raise UserError(f"{url}: S3 at {endpoint} failed: {error}") from None
    allow_plain_http(endpoint)


def _client_error(url: str, bucket: str, endpoint: str, error) -> UserError:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("NoSuchBucket", "404") or status == 404:
        return UserError(
            f"{url}: bucket {bucket!r} does not exist at {endpoint}: create it (aws s3 mb s3://{bucket}) or correct "
            f"the bucket in the URL; a bucket of another store needs {ENDPOINT_HELP}"
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired",
                "InvalidClientTokenId", "UnrecognizedClientException"):
        return UserError(f"{url}: {endpoint} rejected the credentials ({code}): set the right {CREDENTIALS_HELP}")
    if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
        return UserError(
            f"{url}: the credentials may not list s3://{bucket} ({code or status}): grant them s3:ListBucket and "
            f"s3:GetObject (s3:PutObject to write), or set other {CREDENTIALS_HELP}"
        )
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
        return UserError(f"{url}: bucket {bucket!r} is in another region ({code}): set AWS_DEFAULT_REGION to its region")
    return UserError(f"{url}: S3 at {endpoint} answered {code or status}: {error.response.get('Error', {}).get('Message', error)}")


def allow_plain_http(endpoint: str | None) -> None:
    """LitData downloads chunks with obstore, whose client refuses ``http://`` endpoints unless ``allow_http`` is
    in its client options, which LitData (0.2.7x) fixes in a module dictionary: add it there for such endpoints.
    Forked DataLoader workers inherit it; every DDP process runs :func:`check` itself."""
    if not endpoint or not endpoint.startswith("http://"):
        return
    try:
        from litdata.streaming import downloader
    except ImportError:
        return
    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options["allow_http"] = "true"


def read_bytes(url: str) -> bytes:
    """A small object's bytes; ``FileNotFoundError`` when there is none."""
    bucket, key = bucket_and_key(url)
    s3 = client(attempts=3)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise FileNotFoundError(url) from None


def holds_objects(url: str) -> bool:
    """Whether anything lies under the prefix ``url`` (``url/…``)."""
    bucket, prefix = bucket_and_key(url)
    listed = client(attempts=3).list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "", MaxKeys=1)
    return listed.get("KeyCount", 0) > 0


def upload_folder(folder: Path, url: str, progress: bool = True, label: str = "") -> None:
    """Upload every file under ``folder`` to ``url/<its relative path>`` (multipart for large chunks)."""
    from tqdm.auto import tqdm

    bucket, prefix = bucket_and_key(url)
    s3 = client(attempts=5, timeout=30)
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.endswith(".lock"))
    for path in tqdm(files, desc=f"uploading {label or url}", unit="file", disable=not progress, mininterval=1.0):
        key = "/".join(filter(None, [prefix, path.relative_to(folder).as_posix()]))
        s3.upload_file(str(path), bucket, key)


def upload_file(path: Path, url: str) -> None:
    bucket, key = bucket_and_key(url)
    client(attempts=5, timeout=30).upload_file(str(path), bucket, key)

