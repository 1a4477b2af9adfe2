#!/bin/sh
# One-shot setup of the artifact store (the compose service minio-setup): the bucket that
# AIGC_ARTIFACT_URL names, and the app's own account, allowed into that bucket only. The root
# account never leaves this script. Safe to run again: every step leaves what exists as it is.
set -eu

bucket=${AIGC_ARTIFACT_URL#s3://}
bucket=${bucket%%/*}

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "local/$bucket"

cat > /tmp/aigc-policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": ["arn:aws:s3:::$bucket"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$bucket/*"]}
  ]
}
POLICY
mc admin policy create local aigc-artifacts /tmp/aigc-policy.json
mc admin user add local "$AIGC_S3_ACCESS_KEY_ID" "$AIGC_S3_SECRET_ACCESS_KEY"
# mc refuses to attach a policy twice: attach it only where it is not yet.
if ! mc admin user info local "$AIGC_S3_ACCESS_KEY_ID" | grep -q aigc-artifacts; then
  mc admin policy attach local aigc-artifacts --user "$AIGC_S3_ACCESS_KEY_ID"
fi
