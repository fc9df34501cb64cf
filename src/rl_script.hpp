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

/*
 * One command carries the checks a worker queued in one turn of its event
 * loop: EVALSHA digest numkeys KEY... NCHECKS, then for each check its
 * number of limits and 4 arguments per limit.  At most this many checks:
 */
constexpr size_t  kMaxBatch = 64;

const std::string &limitScript();
const std::string &limitSha();

/*
 * The keys and the arguments (the number of limits, then 4 per limit) of a
 * check of n limits, in strings whose capacity is reused; throws
 * std::bad_alloc.
 */
void buildCheckArgs(const rl_limit_arg_t *limits, size_t n,
    std::vector<std::string> *keys, std::vector<std::string> *args);

/* the Redis protocol form of a command, into cmd (its capacity reused) */
void formatCommand(const std::vector<const std::string *> &argv,
    std::string *cmd);

} /* namespace rl */

#endif /* RL_SCRIPT_HPP */
