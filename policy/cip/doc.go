// Package cip reads sigstore policy-controller ClusterImagePolicy documents
// (policy.sigstore.dev/v1alpha1 and v1beta1) and converts them into portcullis policies
// (policy.PolicyConfig), so that a platform team moving from admission-time to pull-time
// enforcement keeps its policies.
//
// The conversion is exact or refused: a field portcullis cannot honour as policy-controller
// does is an error naming the file, the document and the field path, with the reason and
// what to do instead; unknown fields are errors too (the decode is strict). Nothing is
// ignored but what the cluster writes (status, metadata other than the name).
//
// Semantics kept:
//   - Matching. policy-controller matches its globs against the image reference with its tag
//     or digest, Docker Hub named index.docker.io; portcullis matches the name. TranslateGlob
//     gives the portcullis globs that match the same images, whatever tag or digest is pulled,
//     or refuses the glob.
//   - One policy per image. policy-controller admits an image only if every matching
//     ClusterImagePolicy is satisfied; portcullis applies the first matching policy. Convert
//     refuses ClusterImagePolicies that can match a common image (between themselves, or with
//     an inline policy, which would come first), so that at most one applies to any image.
//   - A ClusterImagePolicy is satisfied by any one of its authorities (require "any"); an
//     authority with attestations is satisfied by those attestations, all of them, signed by
//     it; a static authority passes or fails without signatures.
//   - Transparency log and timestamp requirements follow policy-controller's verification
//     options for each authority (see the README's table).
//
// Policies are named NamePrefix + metadata.name.
package cip
