// Package s3store tests portcullis replicas that share one content store in a real S3 server
// (MinIO): two `portcullis serve` processes on one bucket in front of distribution's registry
// with images signed by cosign v3. It has tests only.
package s3store
