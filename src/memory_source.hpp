// The seam between the engine and the operating system.
//
// The engine never includes an OS header: it asks a memory source for
// memory. The real source (os_source) forwards to sbrk/mmap/munmap; the fake
// (fake_source) serves a fixed buffer, records every call and fails on
// request, so the same engine code is tested, fuzzed and shipped.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>

#include "metadata.hpp"

namespace osmem {

template <class S>
concept MemorySource = requires(S& s, std::intptr_t delta, std::size_t len, std::size_t len2, void* p) {
  // The granularity of mappings; also the calloc mapping threshold.
  { s.page_size() } -> std::same_as<std::size_t>;
  // sbrk(delta): the old break, or nullptr on failure (nothing changed).
  { s.extend(delta) } -> std::same_as<void*>;
  // mmap(NULL, len, RW, PRIVATE|ANONYMOUS): the mapping, or nullptr.
  { s.map(len) } -> std::same_as<void*>;
  // munmap(p, len): false when the system refused.
  { s.unmap(p, len) } -> std::same_as<bool>;
  // mremap(p, len, len2, MREMAP_MAYMOVE) of a whole mapping made by map():
  // where it now lies (its bytes kept), or nullptr (nothing changed).
  { s.remap(p, len, len2) } -> std::same_as<void*>;
  // Where the engine keeps its per-block records (metadata.hpp): memory
  // reserved before the engine's first call, so that using it never needs a
  // system call. The same area for the life of the source.
  { s.metadata_area() } -> std::same_as<MetadataArea>;
};

}  // namespace osmem
