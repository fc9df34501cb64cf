/*
 * The sliding-log limit script and its digest.  The client sends EVALSHA
 * first and falls back to EVAL (which also caches the script in Redis) only
 * on an explicit NOSCRIPT reply.
 */

#ifndef RL_SCRIPT_HPP
#define RL_SCRIPT_HPP

#include <string>


namespace rl {

const std::string &slidingLogScript();
const std::string &slidingLogSha();

} /* namespace rl */

#endif /* RL_SCRIPT_HPP */
