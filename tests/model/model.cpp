#include "model.hpp"

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <stdexcept>

namespace osmem::model {

namespace {

constexpr std::size_t kHeader = osmem::kHeaderSize;

std::string hex(std::size_t v) {
  std::ostringstream os;
  os << "0x" << std::hex << v;
  return os.str();
}

bool is_scheduled(const std::vector<std::size_t>& list, std::size_t call) {
  return std::find(list.begin(), list.end(), call) != list.end();
}

}  // namespace

// ---------------------------------------------------------------------------
// Printing.

std::string to_string(const Addr& a) {
  switch (a.kind) {
    case Addr::Kind::Null:
      return "null";
    case Addr::Kind::Heap:
      return "heap+" + hex(a.value);
    case Addr::Kind::Mapped:
      return "map#" + std::to_string(a.value);
  }
  return "?";
}

std::string to_string(const osmem::SourceCall& c) {
  // A trim's sbrk(-k) is logged as the size_t image of a negative delta.
  const bool negative = c.kind == osmem::SourceCall::Kind::Extend && c.arg > SIZE_MAX / 2;
  const std::string arg = negative ? "-" + std::to_string(0 - c.arg) : std::to_string(c.arg);
  switch (c.kind) {
    case osmem::SourceCall::Kind::Extend:
      return c.ok ? "sbrk(" + arg + ") -> +" + hex(c.result) : "sbrk(" + arg + ") failed";
    case osmem::SourceCall::Kind::Map:
      return c.ok ? "mmap(" + arg + ") -> #" + std::to_string(c.result)
                  : "mmap(" + arg + ") failed";
    case osmem::SourceCall::Kind::Unmap:
      return c.ok ? "munmap(#" + std::to_string(c.result) + ", " + arg + ")"
                  : "munmap(" + arg + ") failed";
    case osmem::SourceCall::Kind::Remap:
      return c.ok ? "mremap(#" + std::to_string(c.result) + ", " + arg + ")"
                  : "mremap(" + arg + ") failed";
  }
  return "?";
}

std::vector<std::string> to_strings(const std::vector<osmem::SourceCall>& calls) {
  std::vector<std::string> out;
  for (const auto& c : calls) out.push_back(to_string(c));
  return out;
}

std::ostream& operator<<(std::ostream& os, const Addr& a) {
  return os << to_string(a);
}

// ---------------------------------------------------------------------------
// Construction and the simulated FakeSource.

Model::Model(osmem::FakeLimits limits, std::size_t page_size, Policy policy)
    : limits_(limits), page_size_(page_size), policy_(policy) {
  // FakeSource clamps the mapping count to its fixed table.
  limits_.max_mappings = std::min(limits_.max_mappings, osmem::FakeSource::kMappingSlots);
}

void Model::reset() {
  break_ = 0;
  extend_calls_ = 0;
  map_calls_ = 0;
  fail_extend_.clear();
  fail_map_.clear();
  foreign_before_.clear();
  next_serial_ = 1;
  live_mapped_bytes_ = 0;
  calls_.clear();
  initialised_ = false;
  blocks_.clear();
  mappings_.clear();
  last_enomem_ = false;
}

// FakeSource silently ignores schedules past its fixed table; so does the model.
void Model::fail_extend_call(std::size_t nth) {
  if (fail_extend_.size() < osmem::FakeSource::kMaxScheduled) fail_extend_.push_back(nth);
}

void Model::fail_map_call(std::size_t nth) {
  if (fail_map_.size() < osmem::FakeSource::kMaxScheduled) fail_map_.push_back(nth);
}

bool Model::foreign_extend(std::size_t delta) {
  if (delta > limits_.heap_capacity - break_) return false;
  break_ += delta;
  return true;
}

void Model::foreign_extend_before_call(std::size_t nth, std::size_t delta) {
  if (foreign_before_.size() < osmem::FakeSource::kMaxScheduled) {
    foreign_before_.emplace_back(nth, delta);
  }
}

std::optional<std::size_t> Model::source_extend(std::size_t delta) {
  ++extend_calls_;
  for (const auto& [call, foreign] : foreign_before_) {
    if (call == extend_calls_) foreign_extend(foreign);
  }
  // FakeSource takes an intptr_t: a delta that does not fit is negative there.
  const bool fail = is_scheduled(fail_extend_, extend_calls_) ||
                    delta > static_cast<std::size_t>(INTPTR_MAX) ||
                    delta > limits_.heap_capacity - break_;
  if (fail) {
    calls_.push_back({osmem::SourceCall::Kind::Extend, false, delta, 0});
    return std::nullopt;
  }
  const std::size_t old = break_;
  break_ += delta;
  calls_.push_back({osmem::SourceCall::Kind::Extend, true, delta, old});
  return old;
}

// sbrk(-k): the log holds the delta as FakeSource sees it, an intptr_t
// converted to size_t.
std::optional<std::size_t> Model::source_shrink(std::size_t k) {
  ++extend_calls_;
  for (const auto& [call, foreign] : foreign_before_) {
    if (call == extend_calls_) foreign_extend(foreign);
  }
  const std::size_t arg = 0 - k;
  if (is_scheduled(fail_extend_, extend_calls_) || k > break_) {
    calls_.push_back({osmem::SourceCall::Kind::Extend, false, arg, 0});
    return std::nullopt;
  }
  const std::size_t old = break_;
  break_ -= k;
  calls_.push_back({osmem::SourceCall::Kind::Extend, true, arg, old});
  return old;
}

std::optional<std::size_t> Model::source_map(std::size_t len) {
  ++map_calls_;
  const bool fail = is_scheduled(fail_map_, map_calls_) || len == 0 ||
                    mappings_.size() >= limits_.max_mappings ||
                    len > limits_.map_capacity - live_mapped_bytes_;
  if (fail) {
    calls_.push_back({osmem::SourceCall::Kind::Map, false, len, 0});
    return std::nullopt;
  }
  const std::size_t serial = next_serial_++;
  live_mapped_bytes_ += len;
  calls_.push_back({osmem::SourceCall::Kind::Map, true, len, serial});
  return serial;
}

void Model::source_unmap(std::size_t serial) {
  const auto i = find_mapping(serial);
  if (!i) violation("unmap of a mapping that is not live");
  const std::size_t len = mappings_[*i].offset + mappings_[*i].size;
  live_mapped_bytes_ -= len;
  mappings_.erase(mappings_.begin() + static_cast<std::ptrdiff_t>(*i));
  calls_.push_back({osmem::SourceCall::Kind::Unmap, true, len, serial});
}

// The mapping's record is the caller's to adjust; this is the call.
void Model::source_unmap_part(std::size_t serial, std::size_t len) {
  live_mapped_bytes_ -= len;
  calls_.push_back({osmem::SourceCall::Kind::Unmap, true, len, serial});
}

// FakeSource's mremap: a map call for failure scheduling; a growth must fit
// the map capacity; a shrink stays, a growth moves (the serial stays).
bool Model::source_remap(std::size_t serial, std::size_t new_len) {
  ++map_calls_;
  Mapping& m = mappings_[*find_mapping(serial)];
  const std::size_t old_len = m.offset + m.size;
  const bool fail =
      is_scheduled(fail_map_, map_calls_) ||
      (new_len > old_len && new_len - old_len > limits_.map_capacity - live_mapped_bytes_);
  calls_.push_back({osmem::SourceCall::Kind::Remap, !fail, new_len, serial});
  if (fail) return false;
  live_mapped_bytes_ = live_mapped_bytes_ - old_len + new_len;
  m.size = new_len - m.offset;
  return true;
}

// ---------------------------------------------------------------------------
// Lookup helpers.

std::size_t Model::block_end(std::size_t index) const {
  return blocks_[index].offset + kHeader + blocks_[index].size;
}

bool Model::touches(std::size_t index) const {
  return index + 1 < blocks_.size() && block_end(index) == blocks_[index + 1].offset;
}

std::optional<std::size_t> Model::find_block(std::size_t header_offset) const {
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    if (blocks_[i].offset == header_offset) return i;
  }
  return std::nullopt;
}

std::optional<std::size_t> Model::find_mapping(std::size_t serial) const {
  for (std::size_t i = 0; i < mappings_.size(); ++i) {
    if (mappings_[i].serial == serial) return i;
  }
  return std::nullopt;
}

bool Model::is_live(Addr p) const {
  if (p.kind == Addr::Kind::Mapped) return find_mapping(p.value).has_value();
  if (p.kind != Addr::Kind::Heap || p.value < kHeader) return false;
  const auto i = find_block(p.value - kHeader);
  return i && blocks_[*i].status == osmem::Status::Alloc;
}

bool Model::is_free_block(Addr p) const {
  if (p.kind != Addr::Kind::Heap || p.value < kHeader) return false;
  const auto i = find_block(p.value - kHeader);
  return i && blocks_[*i].status == osmem::Status::Free;
}

std::size_t Model::capacity(Addr p) const {
  if (!is_live(p)) violation("capacity() of " + to_string(p) + ", which is not live");
  if (p.kind == Addr::Kind::Mapped) return mappings_[*find_mapping(p.value)].size;
  return blocks_[*find_block(p.value - kHeader)].size;
}

// Rule 14: 40 bytes of heap segment per index record.
std::size_t Model::span_limit() const {
  const std::size_t records = limits_.index_records != 0
                                  ? limits_.index_records
                                  : osmem::kDefaultIndexRecords(limits_.heap_capacity);
  return records * 40;
}

std::optional<std::size_t> Model::grow_heap(std::size_t delta) {
  if (delta > span_limit() - heap_span()) return std::nullopt;  // no sbrk at all
  return source_extend(delta);
}

std::size_t Model::heap_span() const {
  std::size_t span = 0;
  for (const Block& b : blocks_) span += kHeader + b.size;
  return span;
}

void Model::violation(const std::string& what) {
  throw std::logic_error("osmem model: " + what);
}

// ---------------------------------------------------------------------------
// Heap block surgery: split and coalesce.

void Model::split(std::size_t index, std::size_t need) {
  Block& b = blocks_[index];
  if (b.size - need < min_split()) return;
  const Block rest{b.offset + kHeader + need, b.size - need - kHeader, osmem::Status::Free};
  b.size = need;
  blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(index) + 1, rest);
  coalesce(index + 1);
}

// Merge the FREE block at index with the next one, then with the previous
// one, when they are FREE and touching. The lower header survives.
void Model::coalesce(std::size_t index) {
  if (touches(index) && blocks_[index + 1].status == osmem::Status::Free) {
    blocks_[index].size += kHeader + blocks_[index + 1].size;
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(index) + 1);
  }
  if (index > 0 && touches(index - 1) && blocks_[index - 1].status == osmem::Status::Free) {
    blocks_[index - 1].size += kHeader + blocks_[index].size;
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(index));
  }
}

// Rules 10 and 11 (and M6: a free may give the top back).
void Model::free_heap_block(std::size_t index) {
  blocks_[index].status = osmem::Status::Free;
  coalesce(index);
  maybe_trim();
}

// ---------------------------------------------------------------------------
// Trim (M6).

void Model::maybe_trim() {
  if (policy_.trim_threshold == 0 || blocks_.empty()) return;
  const Block& top = blocks_.back();
  if (top.status == osmem::Status::Free && top.size > policy_.trim_threshold) {
    trim_top(policy_.top_pad);
  }
}

// The FREE last block keeps pad bytes (at least one alignment unit); the
// whole pages above that go back, when sbrk(0) shows nobody moved the break
// past the block's end.
bool Model::trim_top(std::size_t pad) {
  if (blocks_.empty() || blocks_.back().status != osmem::Status::Free) return false;
  pad = std::max(pad, policy_.align);
  const std::size_t size = blocks_.back().size;
  if (size <= pad) return false;
  const std::size_t k = (size - pad) / page_size_ * page_size_;
  if (k == 0) return false;
  const auto now = source_extend(0);
  if (!now || *now != block_end(blocks_.size() - 1)) return false;
  if (!source_shrink(k)) return false;
  blocks_.back().size -= k;
  return true;
}

bool Model::trim(std::size_t pad) {
  if (!policy_.aligned) violation("trim() is part of the malloc policy only");
  last_enomem_ = false;
  return trim_top(pad);
}

// ---------------------------------------------------------------------------
// Segments (rule 8) and growth (rule 6b-6e, M5).

void Model::first_segment(std::size_t returned, std::size_t delta) {
  const std::size_t start = round(returned);
  const std::size_t brk = returned + delta;
  std::size_t stop = brk;
  if (brk % policy_.align != 0) {
    const std::size_t fix = policy_.align - brk % policy_.align;
    const auto r = grow_heap(fix);
    stop = (r && *r == brk) ? brk + fix : round_down(brk);
  }
  leftover_chunk(start, stop);
}

void Model::leftover_chunk(std::size_t from, std::size_t to) {
  const std::size_t start = round(from);
  const std::size_t stop = round_down(to);
  if (stop <= start || stop - start < min_split()) return;  // too small for a block: unused
  if (stop - start > span_limit() - heap_span()) return;    // rule 14: no records for it
  blocks_.push_back({start, stop - start - kHeader, osmem::Status::Free});
  coalesce(blocks_.size() - 1);
}

// M5: at least the growth step, in whole pages; the seed asks for exactly
// what is missing.
std::size_t Model::growth(std::size_t missing) const {
  if (policy_.growth_step == 0) return missing;
  const std::size_t want = std::max(missing, policy_.growth_step);
  if (want > SIZE_MAX - page_size_) return missing;
  return pages(want);
}

Model::Growth Model::grow(std::size_t delta, std::size_t need, std::size_t* segment_block) {
  const std::size_t end = block_end(blocks_.size() - 1);
  const auto r = grow_heap(delta);
  if (!r) return Growth::Failed;  // (e)
  if (*r == end) return Growth::Contiguous;
  // (d) A foreign sbrk moved the break. The model's break only ever moves
  // up past our blocks, so the engine's ForeignBreak cannot happen on
  // FakeSource.
  if (*r < end) violation("sbrk returned an address below the end of the heap");
  const std::size_t start = round(*r);
  std::size_t seg_end = start + kHeader + need;
  const std::size_t brk = *r + delta;
  if (seg_end > brk) {
    const auto r2 = grow_heap(seg_end - brk);  // completes and realigns
    if (!r2 || *r2 != brk) {
      leftover_chunk(*r, brk);
      if (r2) leftover_chunk(*r2, *r2 + (seg_end - brk));
      return Growth::SegmentFailed;
    }
  }
  // M5: the segment takes the whole growth (the seed's growth is exact).
  seg_end = std::max(seg_end, round_down(brk));
  if (seg_end - start > span_limit() - heap_span()) {  // rule 14: no records for it
    leftover_chunk(*r, seg_end);
    return Growth::SegmentFailed;
  }
  blocks_.push_back({start, seg_end - start - kHeader, osmem::Status::Alloc});
  split(blocks_.size() - 1, need);
  *segment_block = start;
  return Growth::NewSegment;
}

// ---------------------------------------------------------------------------
// Allocation (rules 3, 5, 6, 9, M4, M5).

Addr Model::map_block(std::size_t need) {
  std::size_t len = need + kHeader;
  if (policy_.whole_pages) {
    if (need > SIZE_MAX - kHeader - page_size_) return Addr::null();  // M3: no call
    len = pages(len);
  }
  const auto serial = source_map(len);
  if (!serial) return Addr::null();
  mappings_.push_back({*serial, len - kHeader, kHeader});
  return Addr::mapped(*serial);
}

std::optional<std::size_t> Model::heap_allocate(std::size_t need) {
  if (!initialised_) {
    // Rule 5: the preallocation is retried until it succeeds once.
    const auto r = grow_heap(kPrealloc);
    if (!r) return std::nullopt;
    initialised_ = true;
    first_segment(*r, kPrealloc);
  }
  // (a) Best fit: smallest FREE block that fits; the scan goes up in address
  // order and only a strictly smaller size replaces the pick, so ties go to
  // the lowest address.
  std::optional<std::size_t> best;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    if (b.status != osmem::Status::Free || b.size < need) continue;
    if (!best || b.size < blocks_[*best].size) best = i;
  }
  if (best) {
    blocks_[*best].status = osmem::Status::Alloc;
    const std::size_t offset = blocks_[*best].offset;
    split(*best, need);
    return offset;
  }

  // (b) / (c): grow at the top of the heap (M5: by at least the growth
  // step, the surplus split off FREE).
  const std::size_t last = blocks_.size() - 1;
  const std::size_t end = block_end(last);
  const bool last_free = blocks_[last].status == osmem::Status::Free;
  const std::size_t delta = growth(last_free ? need - blocks_[last].size : kHeader + need);
  std::size_t segment_block = 0;
  switch (grow(delta, need, &segment_block)) {
    case Growth::Failed:
    case Growth::SegmentFailed:
      return std::nullopt;  // (d), (e): rule 9
    case Growth::NewSegment:
      return segment_block;  // (d): the FREE last block stays as it was
    case Growth::Contiguous:
      break;
  }
  if (last_free) {
    blocks_[last].size += delta;
    blocks_[last].status = osmem::Status::Alloc;
    split(last, need);
    return blocks_[last].offset;
  }
  blocks_.push_back({end, delta - kHeader, osmem::Status::Alloc});
  split(blocks_.size() - 1, need);
  return end;
}

// os_malloc with a given mapping threshold (calloc's may be the page size).
Addr Model::allocate(std::size_t n, std::size_t map_threshold) {
  if (n == 0) return Addr::null();
  if (n > max_request()) {
    last_enomem_ = true;
    return Addr::null();
  }
  const std::size_t need = round(n);
  Addr a;
  if (need + kHeader >= map_threshold) {
    a = map_block(need);
  } else if (const auto off = heap_allocate(need)) {
    a = Addr::heap(*off + kHeader);
  } else {
    a = map_block(need);  // rule 9 fallback
  }
  last_enomem_ = a.is_null();
  return a;
}

Addr Model::malloc(std::size_t n) {
  last_enomem_ = false;
  return allocate(zero_size(n), kMmapThreshold);
}

Addr Model::calloc(std::size_t nmemb, std::size_t size) {
  last_enomem_ = false;
  if ((nmemb == 0 || size == 0) && policy_.zero_is_null) return Addr::null();
  if (size != 0 && nmemb > SIZE_MAX / size) {
    last_enomem_ = true;
    return Addr::null();
  }
  return allocate(zero_size(nmemb * size),
                  policy_.calloc_maps_at_page ? page_size_ : kMmapThreshold);
}

// ---------------------------------------------------------------------------
// Aligned allocation (M8).

Addr Model::aligned_malloc(std::size_t align, std::size_t n) {
  if (!policy_.aligned) violation("aligned_malloc() is part of the malloc policy only");
  last_enomem_ = false;
  if (align <= policy_.align) return malloc(n);
  n = zero_size(n);
  // The heap block holds the request, the alignment and a leading remainder.
  if (n > max_request() || round(n) > SIZE_MAX - align ||
      round(n) + align > SIZE_MAX - min_split() || round(n) + align + min_split() > max_request()) {
    last_enomem_ = true;
    return Addr::null();
  }
  const std::size_t need = round(n);
  const std::size_t total = need + align + min_split();
  Addr a;
  if (total + kHeader < kMmapThreshold) {
    if (const auto off = heap_allocate(total)) {
      a = Addr::heap(carve_aligned(*off, align, need) + kHeader);
    }
  }
  if (a.is_null()) a = map_aligned(align, need);
  last_enomem_ = a.is_null();
  return a;
}

// The ALLOC block at offset holds need + align + min_split() bytes or more:
// its payload moves up to the first multiple of align (a real address)
// whose lead is empty or can be a FREE block; returns the aligned block's
// header offset, its tail split off as usual.
std::size_t Model::carve_aligned(std::size_t offset, std::size_t align, std::size_t need) {
  std::size_t i = *find_block(offset);
  const std::uintptr_t p0 = heap_base_ + offset + kHeader;
  std::uintptr_t p = (p0 + align - 1) / align * align;
  if (p != p0 && p - p0 < min_split()) p += align;
  if (p == p0) {
    split(i, need);
    return offset;
  }
  const std::size_t lead = p - p0;
  const std::size_t header = offset + lead;
  const std::size_t whole = blocks_[i].size;
  blocks_[i].size = lead - kHeader;
  blocks_[i].status = osmem::Status::Free;
  blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                 Block{header, whole - lead, osmem::Status::Alloc});
  coalesce(i);  // the lead merges with a FREE block before it
  i = *find_block(header);
  split(i, need);
  return header;
}

// A mapping of header + need + align in whole pages; the aligned header's
// page starts what is kept, the block's last page ends it.
Addr Model::map_aligned(std::size_t align, std::size_t need) {
  if (need > SIZE_MAX - kHeader - align) return Addr::null();
  std::size_t len = kHeader + need + align;
  if (len > SIZE_MAX - page_size_) return Addr::null();
  len = pages(len);
  const auto serial = source_map(len);
  if (!serial) return Addr::null();
  const std::uintptr_t m = map_address_ ? map_address_(*serial) : 0;
  const std::uintptr_t p = (m + kHeader + align - 1) / align * align;
  const std::uintptr_t start = (p - kHeader) / page_size_ * page_size_;
  const std::uintptr_t end = m + pages(p + need - m);
  if (start > m) source_unmap_part(*serial, start - m);
  if (end < m + len) source_unmap_part(*serial, m + len - end);
  mappings_.push_back({*serial, end - p, p - start});
  return Addr::mapped(*serial);
}

// ---------------------------------------------------------------------------
// Free (rule 11).

void Model::free(Addr p) {
  last_enomem_ = false;
  if (p.is_null()) return;
  if (!is_live(p)) violation("free of " + to_string(p) + ", which is not a live block");
  if (p.kind == Addr::Kind::Mapped) {
    source_unmap(p.value);
    return;
  }
  free_heap_block(*find_block(p.value - kHeader));
}

// ---------------------------------------------------------------------------
// Realloc (rule 12, M7).

// Rule 12: the last heap block grows in place, or moves into the segment a
// foreign sbrk started, or (that segment failing) to a mapping; a failed
// sbrk moves it by os_malloc's rules.
Addr Model::grow_last(std::size_t index, std::size_t n, std::size_t need) {
  const std::size_t offset = blocks_[index].offset;
  const std::size_t delta = growth(need - blocks_[index].size);
  std::size_t segment_block = 0;
  switch (grow(delta, need, &segment_block)) {
    case Growth::Contiguous:
      blocks_[index].size += delta;
      split(index, need);
      return Addr::heap(offset + kHeader);
    case Growth::NewSegment:
      free_heap_block(*find_block(offset));
      return Addr::heap(segment_block + kHeader);
    case Growth::SegmentFailed: {
      const Addr q = map_block(need);
      if (q.is_null()) {
        last_enomem_ = true;
        return q;
      }
      free_heap_block(*find_block(offset));
      return q;
    }
    case Growth::Failed:
      break;
  }
  return move_heap_block(offset, n);
}

// Allocate the new block while the old one is still ALLOC, then free the old.
Addr Model::move_heap_block(std::size_t offset, std::size_t n) {
  const Addr q = allocate(n, kMmapThreshold);
  if (q.is_null()) {
    last_enomem_ = true;
    return q;
  }
  // The allocation may have inserted blocks: look the old one up again.
  free_heap_block(*find_block(offset));
  return q;
}

// M7: a mapped block that still needs a mapping keeps its pages when they
// hold the new size, else mremap; a failed shrink keeps the block, a
// failed growth moves it by malloc's rules.
Addr Model::remap_block(Addr p, std::size_t n, std::size_t need) {
  const Mapping& m = mappings_[*find_mapping(p.value)];
  const std::size_t offset = m.offset;
  if (need > SIZE_MAX - offset - page_size_) {
    last_enomem_ = true;
    return Addr::null();
  }
  const std::size_t old_len = offset + m.size;
  const std::size_t new_len = pages(offset + need);
  if (new_len == old_len) return p;
  if (source_remap(p.value, new_len)) return p;
  if (new_len < old_len) return p;
  const Addr q = allocate(n, kMmapThreshold);
  if (q.is_null()) {
    last_enomem_ = true;
    return q;
  }
  source_unmap(p.value);
  return q;
}

Addr Model::realloc(Addr p, std::size_t n) {
  last_enomem_ = false;
  if (p.is_null()) return malloc(n);
  if (!is_live(p) && !is_free_block(p)) {
    violation("realloc of " + to_string(p) + ", which is not a block");
  }
  if (n == 0) {
    free(p);  // a FREE block here is a double free, which free() reports
    return Addr::null();
  }
  if (is_free_block(p)) {
    if (policy_.realloc_freed_fatal) violation("realloc of a freed block " + to_string(p));
    return Addr::null();  // errno left alone
  }
  if (n > max_request()) {
    last_enomem_ = true;
    return Addr::null();
  }
  const std::size_t need = round(n);

  if (p.kind == Addr::Kind::Mapped) {
    if (policy_.whole_pages && need + kHeader >= kMmapThreshold) return remap_block(p, n, need);
    const Addr q = allocate(n, kMmapThreshold);
    if (q.is_null()) {
      last_enomem_ = true;
      return q;
    }
    source_unmap(p.value);
    return q;
  }

  const std::size_t offset = p.value - kHeader;
  std::size_t i = *find_block(offset);

  if (need + kHeader >= kMmapThreshold) {
    const Addr q = map_block(need);
    if (q.is_null()) {
      last_enomem_ = true;
      return q;
    }
    free_heap_block(*find_block(offset));
    return q;
  }

  if (need <= blocks_[i].size) {
    split(i, need);
    maybe_trim();  // M6: an in-place shrink may give the top back
    return p;
  }

  const bool is_last = i + 1 == blocks_.size();
  if (is_last) return grow_last(i, n, need);

  if (touches(i) && blocks_[i + 1].status == osmem::Status::Free) {
    // The absorbed neighbour stays absorbed even when it is not enough.
    blocks_[i].size += kHeader + blocks_[i + 1].size;
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    if (blocks_[i].size >= need) {
      split(i, need);
      return p;
    }
    if (i + 1 == blocks_.size()) return grow_last(i, n, need);
  }
  return move_heap_block(offset, n);
}

// ---------------------------------------------------------------------------
// Self-checks and printing.

std::string Model::check() const {
  std::ostringstream err;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    if (b.offset % policy_.align != 0 || b.size % policy_.align != 0 || b.size == 0) {
      err << "block " << i << " at " << hex(b.offset) << " is misaligned or empty";
      return err.str();
    }
    if (b.status == osmem::Status::Mapped) {
      err << "block " << i << " is a heap block marked MAPPED";
      return err.str();
    }
    if (block_end(i) > break_) {
      err << "block " << i << " ends past the break";
      return err.str();
    }
    if (i + 1 < blocks_.size()) {
      if (block_end(i) > blocks_[i + 1].offset) {
        err << "blocks " << i << " and " << i + 1 << " overlap or are out of order";
        return err.str();
      }
      if (touches(i) && b.status == osmem::Status::Free &&
          blocks_[i + 1].status == osmem::Status::Free) {
        err << "touching FREE blocks " << i << " and " << i + 1 << " were not merged";
        return err.str();
      }
    }
  }
  if (!initialised_ && !blocks_.empty()) return "heap blocks exist before the preallocation";
  return "";
}

std::string Model::dump() const {
  std::ostringstream os;
  os << "break " << hex(break_) << (initialised_ ? "" : " (heap uninitialised)") << "\n";
  for (const Block& b : blocks_) {
    os << "  " << hex(b.offset) << " size " << b.size << " "
       << (b.status == osmem::Status::Free ? "FREE" : "ALLOC") << "\n";
  }
  for (const Mapping& m : mappings_) {
    os << "  map#" << m.serial << " size " << m.size << " offset " << m.offset << "\n";
  }
  return os.str();
}

}  // namespace osmem::model
