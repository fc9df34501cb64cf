/*
 * Pure domain logic of the core: hashing, key building, decoding the
 * script's reply into a verdict.  No I/O and no clock: time and values come
 * in as parameters, so unit tests assert exact keys and numbers.
 */

#ifndef RL_LIMIT_HPP
#define RL_LIMIT_HPP

#include "rl_api.h"

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>


namespace rl {

/* 40 lowercase hex digits of the SHA-1 of data */
std::string sha1Hex(const void *data, size_t len);

/*
 * Fills v from the reply of the limit script for n limits.  Returns false,
 * with v->error = RL_ERR_REPLY and v->errstr set, when the reply is an error
 * or is not the array of integers the script returns.
 */
bool decodeReply(const redisReply *reply, size_t n, rl_verdict_t *v) noexcept;

} /* namespace rl */

#endif /* RL_LIMIT_HPP */
