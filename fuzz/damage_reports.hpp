// What the reports must say about headers the `corruption` target damaged
// on purpose: that they name the right block, once.
//
// The oracle is a copy of every header taken before the writes (the heap
// list in address order, then the live mappings): which headers changed,
// and, for a heap header, which block ended right before it. Nothing here
// trusts the damaged heap; it compares what the engine's report functions
// print (captured through a memfd) with what the copies say they must.
//
// "Reported once" is what the fatal report promises (docs/debug-mode.md,
// "Reports"): it gives the checker's first violation only, and counts the
// rest as its likely consequences. So the first violation must be the
// damage itself: a canary mismatch at the lowest damaged header on the heap
// list (the checker walks it in address order, and every header before that
// one is intact), or at a damaged mapping when no heap header changed; and
// the report must print exactly one violation, then the count of the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "debug_checks.hpp"
#include "diagnosis.hpp"
#include "invariant.hpp"
#include "report_capture.hpp"

namespace osmem::fuzz {

struct HeaderSnapshot {
  BlockMeta* header;
  Status status;
  unsigned char bytes[kHeaderSize];
};

inline std::string hex_of(const void* p) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%lx",
                static_cast<unsigned long>(reinterpret_cast<std::uintptr_t>(p)));
  return text;
}

class Damage {
 public:
  static constexpr std::size_t kNone = SIZE_MAX;

  // `headers` as they were before the writes; compared with memory now.
  explicit Damage(const std::vector<HeaderSnapshot>& headers) : headers_(headers) {
    for (std::size_t i = 0; i < headers_.size(); ++i) {
      const bool changed = std::memcmp(headers_[i].bytes, headers_[i].header, kHeaderSize) != 0;
      changed_.push_back(changed);
      if (changed && headers_[i].status != Status::Mapped && first_heap_ == kNone) {
        first_heap_ = i;
      }
    }
  }

  // The snapshot index of `header`, or kNone.
  std::size_t index_of(const void* header) const {
    for (std::size_t i = 0; i < headers_.size(); ++i) {
      if (headers_[i].header == header) return i;
    }
    return kNone;
  }
  bool is_damaged(const void* header) const {
    const std::size_t i = index_of(header);
    return i != kNone && changed_[i];
  }

  // The checker's first violation and the fatal report built on it: "" when
  // they name the right block once, else what is wrong.
  template <class HeapT>
  std::string judge_checker(const HeapT& heap, const Violation& first,
                            std::size_t violations) const {
    if (first.invariant != Invariant::CanaryMismatch || !is_damaged(first.block) ||
        (first_heap_ != kNone && first.block != headers_[first_heap_].header)) {
      return std::string("the checker's first violation is ") + invariant_name(first.invariant) +
             " at " + hex_of(first.block) + "; the damaged header it must name first is " +
             (first_heap_ != kNone ? hex_of(headers_[first_heap_].header)
                                   : std::string("a damaged mapping's"));
    }
    const std::string text =
        capture_report([&](int fd) { report_violations(heap, "os_heap_check", "in", 0, 1, fd); });
    const std::string block = hex_of(first.block);
    const std::string head =
        "osmem: heap inconsistent in os_heap_check: header canary mismatch at block " + block +
        " (user pointer " + hex_of(reinterpret_cast<const std::byte*>(first.block) + kHeaderSize) +
        ")\n";
    if (text.rfind(head, 0) != 0) return "the fatal report does not start with\n" + head + text;
    if (count(text, "osmem: heap inconsistent") != 1) {
      return "the fatal report names more than one violation:\n" + text;
    }
    const std::string more = "osmem: ... and " + std::to_string(violations - 1) +
                             " more violation(s), likely consequences of this one\n";
    if ((violations > 1) != (text.find(more) != std::string::npos) ||
        count(text, "osmem: ...") != (violations > 1 ? 1u : 0u)) {
      return "the fatal report does not count the " + std::to_string(violations - 1) +
             " other violation(s) once:\n" + text;
    }
    if (first_heap_ == kNone) {
      if (text.find("likely cause") != std::string::npos) {
        return "the fatal report of a damaged mapping blames a heap block:\n" + text;
      }
      return "";
    }
    const std::string shown = "  > " + block + " size ";
    const std::size_t at = text.find(shown);
    const std::size_t end = at == std::string::npos ? at : text.find('\n', at);
    const std::string marked = " (damaged: canary mismatch, values as read)";
    if (end == std::string::npos || end < at + marked.size() ||
        text.compare(end - marked.size(), marked.size(), marked) != 0) {
      return "the fatal report does not show " + block + " as damaged:\n" + text;
    }
    const std::string cause = expected_cause(first_heap_);
    if (text.find(cause) == std::string::npos) {
      return "the fatal report does not give the cause\n" + cause + text;
    }
    return "";
  }

  // The diagnosis of an engine error at `address` (print_diagnosis): "" when
  // it names a damaged block, marks it as damaged and blames the block that
  // ends right before it, else what is wrong.
  template <class HeapT>
  std::string judge_diagnosis(const HeapT& heap, ErrorKind kind, const void* address) const {
    const auto* header = static_cast<const std::byte*>(address) - kHeaderSize;
    const std::size_t i = index_of(header);
    if (kind != ErrorKind::HeaderCorrupted || i == kNone || !changed_[i]) {
      return std::string("the engine reported ") + error_name(kind) + " at " + hex_of(address) +
             ", not a damaged header's block";
    }
    const std::string text =
        capture_report([&](int fd) { print_diagnosis(heap, kind, 0, address, fd); });
    const std::string first =
        "  operation 0, user pointer " + hex_of(address) + ", header " + hex_of(header) + "\n";
    const std::string rule =
        std::string("  broken rule: ") + invariant_name(Invariant::CanaryMismatch) + "\n";
    if (text.rfind(first, 0) != 0 || text.find(rule) == std::string::npos) {
      return "the diagnosis does not name the block and the broken rule:\n" + text;
    }
    if (headers_[i].status == Status::Mapped) {
      // Nothing on the heap list is to blame for a mapping's header.
      const std::string cause =
          "  likely cause: a write before the start of this mapped block, or a stray write\n";
      if (text.find(" is damaged ") != std::string::npos ||
          text.find("the heap list is damaged") != std::string::npos ||
          text.find(cause) == std::string::npos) {
        return "the diagnosis of a damaged mapping blames the heap:\n" + text;
      }
      return "";
    }
    // The walk from the head stops at the lowest damaged header, which is
    // this one or lies before it.
    const std::string damaged = hex_of(headers_[first_heap_].header);
    if (text.find("  header " + damaged + " is damaged (its canary does not match); as read") ==
        std::string::npos) {
      return "the diagnosis does not show " + damaged + " as damaged:\n" + text;
    }
    if (first_heap_ != i && text.find("  the heap list is damaged before this pointer, at header " +
                                      damaged) == std::string::npos) {
      return "the diagnosis does not say the list is damaged before the pointer, at " + damaged +
             ":\n" + text;
    }
    const std::string cause = expected_cause(first_heap_);
    if (text.find(cause) == std::string::npos) {
      return "the diagnosis does not give the cause\n" + cause + text;
    }
    return "";
  }

 private:
  static std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (std::size_t at = text.find(what); at != std::string::npos;
         at = text.find(what, at + what.size())) {
      ++n;
    }
    return n;
  }

  // The likely cause the reports must give for the damaged heap header at
  // snapshot index i, all of whose predecessors are intact: the block that
  // ends right before it (a run past its end reached the header), else a
  // stray write.
  std::string expected_cause(std::size_t i) const {
    if (i > 0 && headers_[i - 1].status != Status::Mapped) {
      BlockMeta before;
      std::memcpy(&before, headers_[i - 1].bytes, sizeof before);
      const auto* start = reinterpret_cast<const std::byte*>(headers_[i - 1].header);
      if (start + kHeaderSize + before.size ==
          reinterpret_cast<const std::byte*>(headers_[i].header)) {
        return "  likely cause: the block before it, user pointer " + hex_of(start + kHeaderSize) +
               " (header " + hex_of(start) + ", size " + std::to_string(before.size) +
               "), ends right before this header: an overflow from it is likely\n";
      }
    }
    return "  likely cause: a stray write (no block ends right before this header)\n";
  }

  const std::vector<HeaderSnapshot>& headers_;
  std::vector<bool> changed_;
  std::size_t first_heap_ = kNone;
};

}  // namespace osmem::fuzz
