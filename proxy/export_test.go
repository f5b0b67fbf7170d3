package proxy

// Chunk is chunk, for the external tests of the blob path.
const Chunk = chunk
