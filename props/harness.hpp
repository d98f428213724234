// Shared plumbing for the properties: a Lockstep whose engine reports fatal
// errors by throwing, and a wrapper that turns any way the engine or the
// model can disagree into a RapidCheck failure with a readable message.
#pragma once

#include <rapidcheck.h>

#include <stdexcept>
#include <string>

#include "model/lockstep.hpp"
#include "report.hpp"

namespace osmem::props {

// A fatal error the engine reported. Most properties only make valid calls,
// so for them any of these is a finding; the bad-input properties expect
// one of a given kind.
struct EngineError : std::runtime_error {
  ErrorKind kind;
  const void* address;
  EngineError(ErrorKind k, const char* operation, const void* a)
      : std::runtime_error(std::string(operation) + " reported " + error_name(k) + " at " +
                           std::to_string(reinterpret_cast<std::uintptr_t>(a))),
        kind(k),
        address(a) {}
};

[[noreturn]] inline void throwing_handler(ErrorKind kind, const char* operation,
                                          const void* address) {
  throw EngineError(kind, operation, address);
}

// A fresh engine and model per test case; the default handler would abort
// the whole run, which loses the counterexample.
struct Harness {
  model::Lockstep ls;
  Harness() { ls.engine().set_error_handler(throwing_handler); }
};

// Runs f; a divergence, an engine error or a model complaint fails the case
// with the message (which carries the operations so far).
template <class F>
void guarded(F&& f) {
  try {
    f();
  } catch (const model::Divergence& e) {
    // Lockstep's trace names results by step number and shows addresses as
    // heap offsets or mapping serials; the program above is the same run.
    RC_FAIL(std::string("divergence from the model: ") + e.what());
  } catch (const EngineError& e) {
    RC_FAIL(std::string("fatal engine error on a valid call: ") + e.what());
  } catch (const std::logic_error& e) {
    RC_FAIL(std::string("the model rejected the call: ") + e.what());
  }
}

}  // namespace osmem::props
