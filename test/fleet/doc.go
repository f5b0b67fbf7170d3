// Package fleet tests portcullis run as a fleet: two `portcullis serve` processes sharing
// decisions through one redis-server (cache.redis), in front of distribution's registry with
// images signed by cosign v3. It has tests only; test/s3store covers replicas sharing content
// in one S3 bucket.
package fleet
