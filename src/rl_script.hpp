/*
 * The limit script, its digest and its arguments.  The client sends EVALSHA
 * first and falls back to EVAL (which also caches the script in Redis) only
 * on an explicit NOSCRIPT reply.
 */

#ifndef RL_SCRIPT_HPP
#define RL_SCRIPT_HPP

#include "rl_api.h"

#include <string>
#include <vector>


namespace rl {

/* EVALSHA, digest, numkeys, the keys, then 4 arguments per limit */
constexpr size_t  kMaxArgv = 3 + 5 * RL_MAX_LIMITS;

const std::string &limitScript();
const std::string &limitSha();

/* the EVALSHA command of a check of n limits; throws std::bad_alloc */
void buildArgv(const rl_limit_arg_t *limits, size_t n,
    std::vector<std::string> *argv);

} /* namespace rl */

#endif /* RL_SCRIPT_HPP */
