#include "model/lockstep.hpp"

#include <cerrno>
#include <cstring>
#include <sstream>

namespace osmem::model {

namespace {

// Position-dependent, so a copy shifted by a few bytes or cut one byte
// short does not match.
inline std::uint8_t pattern(std::uint8_t tag, std::size_t j) {
  return static_cast<std::uint8_t>(tag + j * 0x9d + (j >> 8) * 0x35);
}

std::string hex(std::uintptr_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

std::string call_list(const std::vector<SourceCall>& calls) {
  std::string out = "[";
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (i > 0) out += ", ";
    out += to_string(calls[i]);
  }
  return out + "]";
}

}  // namespace

Lockstep::Lockstep(Options options)
    : options_(options),
      source_(std::make_unique<FakeSource>(options.limits)),
      model_(options.limits, FakeSource::kPageSize) {
  engine_ = std::make_unique<Engine>(*source_, options_.cookie);
}

void Lockstep::reset() {
  engine_.reset();
  source_->reset();
  engine_ = std::make_unique<Engine>(*source_, options_.cookie);
  model_.reset();
  live_.clear();
  extents_.clear();
  freed_.clear();
  next_tag_ = 1;
  steps_ = 0;
  transcript_.clear();
}

void Lockstep::note(const std::string& line) {
  transcript_ += line;
  transcript_ += '\n';
}

Addr Lockstep::addr_of(const void* p) const {
  if (p == nullptr) return Addr::null();
  if (source_->in_heap_buffer(p)) {
    return Addr::heap(
        static_cast<std::size_t>(static_cast<const std::byte*>(p) - source_->heap_base()));
  }
  if (std::size_t serial = source_->mapping_serial(p)) return Addr::mapped(serial);
  diverge("the engine returned " + hex(reinterpret_cast<std::uintptr_t>(p)) +
          ", which is neither in the heap buffer nor in a live mapping");
}

void Lockstep::diverge(const std::string& what) const {
  throw Divergence("step " + std::to_string(steps_) + ": " + what + "\noperations so far:\n" +
                   transcript_);
}

void Lockstep::compare_calls(const std::string& op) {
  std::vector<SourceCall> got;
  for (std::size_t i = 0; i < source_->call_count(); ++i) got.push_back(source_->call(i));
  const std::vector<SourceCall>& want = model_.calls();
  bool same = !source_->overflowed() && got.size() == want.size();
  for (std::size_t i = 0; same && i < got.size(); ++i) {
    same = got[i].kind == want[i].kind && got[i].ok == want[i].ok && got[i].arg == want[i].arg &&
           got[i].result == want[i].result;
  }
  if (!same) {
    diverge(op + ": system calls differ\n  engine: " + call_list(got) +
            "\n  model:  " + call_list(want));
  }
  last_calls_ = std::move(got);
  source_->clear_calls();
  model_.clear_calls();
}

void Lockstep::compare_result(const std::string& op, const void* got, const Addr& want) {
  const Addr a = addr_of(got);
  if (!(a == want)) diverge(op + ": returned " + to_string(a) + ", model says " + to_string(want));
  if (got != nullptr && !is_aligned8(reinterpret_cast<std::uintptr_t>(got))) {
    diverge(op + ": returned a misaligned pointer");
  }
}

void Lockstep::check_errno(const std::string& op, const void* got, int err) {
  if (got != nullptr) return;
  if (model_.last_enomem() && err != ENOMEM) {
    diverge(op + ": returned NULL with errno " + std::to_string(err) + ", expected ENOMEM");
  }
  if (!model_.last_enomem() && err != 0) {
    diverge(op + ": returned NULL and changed errno to " + std::to_string(err) +
            "; it should have left errno alone");
  }
}

void Lockstep::run_checker(const std::string& op) {
  Violation found[16];
  const std::size_t n = engine_->check(found, 16);
  if (n == 0) return;
  std::string what = op + ": the checker found " + std::to_string(n) + " violation(s):";
  for (std::size_t i = 0; i < n && i < 16; ++i) {
    what += std::string("\n  ") + invariant_name(found[i].invariant) + " at " +
            hex(reinterpret_cast<std::uintptr_t>(found[i].block));
  }
  diverge(what);
}

void Lockstep::compare_blocks(const std::string& op) {
  const std::vector<Block>& want = model_.heap_blocks();
  std::size_t i = 0;
  // Headers are no access to memory tools outside the engine: each is held
  // open only while it is compared.
  for (const BlockMeta* b = engine_->blocks().head(); b != nullptr; b = next_of(b), ++i) {
    const OpenHeader open(b);
    const auto offset =
        static_cast<std::size_t>(reinterpret_cast<const std::byte*>(b) - source_->heap_base());
    if (i >= want.size() || want[i].offset != offset || want[i].size != b->size ||
        want[i].status != b->status) {
      std::ostringstream s;
      s << op << ": heap block " << i << " is at +0x" << std::hex << offset << std::dec << " size "
        << b->size << " status " << static_cast<int>(b->status);
      if (i < want.size()) {
        s << "; model has +0x" << std::hex << want[i].offset << std::dec << " size " << want[i].size
          << " status " << static_cast<int>(want[i].status);
      } else {
        s << "; model has no more blocks";
      }
      diverge(s.str());
    }
  }
  if (i != want.size()) {
    diverge(op + ": engine has " + std::to_string(i) + " heap blocks, model " +
            std::to_string(want.size()));
  }
  if (engine_->mappings().count() != model_.mappings().size() ||
      source_->live_mappings() != model_.mappings().size()) {
    diverge(op + ": live mappings: engine " + std::to_string(engine_->mappings().count()) +
            ", source " + std::to_string(source_->live_mappings()) + ", model " +
            std::to_string(model_.mappings().size()));
  }
  if (source_->misuse_count() != 0) diverge(op + ": the engine unmapped something not mapped");
}

void Lockstep::after_step(const std::string& op) {
  compare_calls(op);
  if (options_.full_every != 0 && steps_ % options_.full_every == 0) {
    run_checker(op);
    compare_blocks(op);
  }
  ++steps_;
}

void Lockstep::fill(Live& l) {
  for (std::size_t j = 0; j < l.requested; ++j) l.ptr[j] = std::byte{pattern(l.tag, j)};
}

void Lockstep::verify_contents(const std::string& op, const Live& l) const {
  for (std::size_t j = 0; j < l.requested; ++j) {
    if (std::to_integer<std::uint8_t>(l.ptr[j]) != pattern(l.tag, j)) {
      diverge(op + ": block " + to_string(l.addr) + " lost its contents at byte " +
              std::to_string(j) + " of " + std::to_string(l.requested));
    }
  }
}

long Lockstep::adopt(const std::string& op, void* p, const Addr& a, std::size_t requested,
                     bool zeroed, const Live* kept) {
  auto* bytes = static_cast<std::byte*>(p);
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  // No overlap with any other live block.
  auto it = extents_.lower_bound(start);
  if (it != extents_.end() && it->first < start + requested) {
    diverge(op + ": the new block overlaps a live block at " + hex(it->first));
  }
  if (it != extents_.begin()) {
    auto before = std::prev(it);
    if (before->first + before->second > start) {
      diverge(op + ": the new block overlaps a live block at " + hex(before->first));
    }
  }
  if (zeroed) {
    for (std::size_t j = 0; j < requested; ++j) {
      if (bytes[j] != std::byte{0}) {
        diverge(op + ": calloc memory not zero at byte " + std::to_string(j));
      }
    }
  }
  // A moved or resized block keeps its tag: its kept prefix already holds
  // the pattern, and the rest continues it.
  Live l{bytes, a, requested, kept != nullptr ? kept->tag : next_tag_++};
  if (next_tag_ == 0) next_tag_ = 1;
  const std::size_t from = kept != nullptr ? kept->requested : 0;
  for (std::size_t j = from; j < requested; ++j) bytes[j] = std::byte{pattern(l.tag, j)};
  extents_[start] = requested;
  live_.push_back(l);
  return static_cast<long>(live_.size() - 1);
}

long Lockstep::malloc(std::size_t n) {
  const std::string op = "p" + std::to_string(steps_) + " = os_malloc(" + std::to_string(n) + ")";
  note(op);
  errno = 0;
  void* p = engine_->malloc(n);
  const int err = errno;
  const Addr want = model_.malloc(n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  long index = p == nullptr ? -1 : adopt(op, p, want, n, false, nullptr);
  after_step(op);
  return index;
}

long Lockstep::calloc(std::size_t nmemb, std::size_t size) {
  const std::string op = "p" + std::to_string(steps_) + " = os_calloc(" + std::to_string(nmemb) +
                         ", " + std::to_string(size) + ")";
  note(op);
  errno = 0;
  void* p = engine_->calloc(nmemb, size);
  const int err = errno;
  const Addr want = model_.calloc(nmemb, size);
  compare_result(op, p, want);
  check_errno(op, p, err);
  long index = p == nullptr ? -1 : adopt(op, p, want, nmemb * size, true, nullptr);
  after_step(op);
  return index;
}

long Lockstep::realloc_null(std::size_t n) {
  const std::string op =
      "p" + std::to_string(steps_) + " = os_realloc(NULL, " + std::to_string(n) + ")";
  note(op);
  errno = 0;
  void* p = engine_->realloc(nullptr, n);
  const int err = errno;
  const Addr want = model_.realloc(Addr::null(), n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  long index = p == nullptr ? -1 : adopt(op, p, want, n, false, nullptr);
  after_step(op);
  return index;
}

long Lockstep::realloc(std::size_t index, std::size_t n) {
  const Live old = live_.at(index);
  const std::string op = "p" + std::to_string(steps_) + " = os_realloc(" + to_string(old.addr) +
                         " /*" + std::to_string(old.requested) + " bytes*/, " + std::to_string(n) +
                         ")";
  note(op);
  verify_contents(op + " (before)", old);
  errno = 0;
  void* p = engine_->realloc(old.ptr, n);
  const int err = errno;
  const Addr want = model_.realloc(old.addr, n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  const bool old_gone = p != nullptr || n == 0;
  if (old_gone) {
    extents_.erase(reinterpret_cast<std::uintptr_t>(old.ptr));
    live_.erase(live_.begin() + static_cast<long>(index));
    if (old.addr.kind == Addr::Kind::Heap && p != old.ptr) freed_.emplace_back(old.ptr, old.addr);
  } else {
    verify_contents(op + " (failed, old block)", old);
  }
  long result = -1;
  if (p != nullptr) {
    const std::size_t keep = old.requested < n ? old.requested : n;
    Live probe{static_cast<std::byte*>(p), want, keep, old.tag};
    verify_contents(op + " (prefix)", probe);
    result = adopt(op, p, want, n, false, &probe);
  }
  after_step(op);
  return result;
}

void Lockstep::free(std::size_t index) {
  const Live old = live_.at(index);
  const std::string op = "os_free(" + to_string(old.addr) + ")";
  note(op);
  verify_contents(op, old);
  engine_->free(old.ptr);
  model_.free(old.addr);
  extents_.erase(reinterpret_cast<std::uintptr_t>(old.ptr));
  live_.erase(live_.begin() + static_cast<long>(index));
  if (old.addr.kind == Addr::Kind::Heap) {
    freed_.emplace_back(old.ptr, old.addr);
    if (freed_.size() > 64) freed_.erase(freed_.begin());
  }
  after_step(op);
}

bool Lockstep::realloc_freed(std::size_t pick, std::size_t n) {
  if (freed_.empty()) return false;
  const auto [ptr, addr] = freed_[pick % freed_.size()];
  if (!model_.is_free_block(addr) || n == 0) return false;
  const std::string op = "os_realloc(" + to_string(addr) + " /*freed*/, " + std::to_string(n) + ")";
  note(op);
  errno = 0;
  void* p = engine_->realloc(ptr, n);
  const int err = errno;
  const Addr want = model_.realloc(addr, n);
  compare_result(op, p, want);
  check_errno(op, p, err);
  if (p != nullptr) diverge(op + ": realloc of a free block must return NULL");
  after_step(op);
  return true;
}

void Lockstep::fail_next_extend() {
  note("/* the next sbrk fails */");
  source_->fail_next_extend();
  model_.fail_next_extend();
}

void Lockstep::fail_extend_later(std::size_t later) {
  note("/* sbrk call " + std::to_string(later) + " from now fails */");
  const std::size_t nth = source_->extend_calls() + later;
  if (model_.extend_calls() + later != nth)
    diverge("the source and the model count sbrk calls apart");
  source_->fail_extend_call(nth);
  model_.fail_extend_call(nth);
}

void Lockstep::fail_next_map() {
  note("/* the next mmap fails */");
  source_->fail_next_map();
  model_.fail_next_map();
}

bool Lockstep::foreign_extend(std::size_t delta) {
  note("/* another component calls sbrk(" + std::to_string(delta) + ") */");
  const bool a = source_->foreign_extend(delta);
  const bool b = model_.foreign_extend(delta);
  if (a != b) diverge("foreign sbrk: the source and the model disagree on capacity");
  return a;
}

void Lockstep::foreign_extend_before_sbrk(std::size_t later, std::size_t delta) {
  note("/* another component calls sbrk(" + std::to_string(delta) + ") just before sbrk call " +
       std::to_string(later) + " from now */");
  const std::size_t nth = source_->extend_calls() + later;
  if (model_.extend_calls() + later != nth)
    diverge("the source and the model count sbrk calls apart");
  source_->foreign_extend_before_call(nth, delta);
  model_.foreign_extend_before_call(nth, delta);
}

void Lockstep::verify_all() {
  const std::string op = "final verification";
  for (const Live& l : live_) verify_contents(op, l);
  run_checker(op);
  compare_blocks(op);
}

void Lockstep::free_all() {
  while (!live_.empty()) free(live_.size() - 1);
  verify_all();
}

}  // namespace osmem::model
