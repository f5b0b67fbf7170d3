package cip

// GlobsOverlap exposes globsOverlap to the tests.
var GlobsOverlap = globsOverlap
