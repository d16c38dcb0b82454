#!/bin/sh
# One-shot MinIO setup, shared by Compose (service minio-init) and Kubernetes
# (Job minio-init). Idempotent: safe to run on every start.
#   - creates the bucket
#   - creates the application's own access key with a policy limited to that
#     bucket, so the API and workers never hold the MinIO root credentials.
# CORS: MinIO applies CORS server-wide (MINIO_API_CORS_ALLOW_ORIGIN on the
# server), not per bucket, so there is nothing to set here. No anonymous
# access is granted: browsers only use presigned URLs.
# Needs: MINIO_URL, MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, S3_BUCKET,
#        S3_ACCESS_KEY, S3_SECRET_KEY.
set -eu

tries=0
until mc alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -ge 60 ]; then
    echo "minio-init: MinIO at $MINIO_URL did not answer after 60 tries" >&2
    exit 1
  fi
  sleep 2
done

mc mb --ignore-existing "local/$S3_BUCKET"

policy_file="$(mktemp)"
cat >"$policy_file" <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$S3_BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$S3_BUCKET/*"]
    }
  ]
}
POLICY
mc admin policy create local video2mp3-app "$policy_file"
rm -f "$policy_file"

mc admin user add local "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
if ! mc admin user info local "$S3_ACCESS_KEY" | grep -q video2mp3-app; then
  mc admin policy attach local video2mp3-app --user "$S3_ACCESS_KEY"
fi
echo "minio-init: bucket $S3_BUCKET and user $S3_ACCESS_KEY ready"
