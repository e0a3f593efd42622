/*  =========================================================================
    sgmq_proto_internal - codec internals that tests and fuzzers look at

    Not part of the API: nothing outside proto/ and tests/ includes this.
    =========================================================================
*/
#ifndef SGMQ_PROTO_INTERNAL_H_INCLUDED
#define SGMQ_PROTO_INTERNAL_H_INCLUDED

#include "sgmq_proto.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Bytes the frame's arena holds in blocks right now (its peak since the
//  last trim). Lets tests check that decoding allocates at most a fixed
//  multiple of the input size.
size_t
    sgmq_proto_frame_arena_size (sgmq_proto_frame_t *self);

//  A fresh frame's arena, after one decode of `size` bytes, never holds
//  more than this many bytes. Tests and the fuzzer assert it.
size_t
    sgmq_proto_arena_bound (size_t size);

#ifdef __cplusplus
}
#endif

#endif
