// The heap's blocks in address order: a doubly linked list through the
// headers' prev/next fields, spanning every sbrk segment. Each operation
// reseals exactly the headers whose links it changed, so canaries stay
// valid without the callers having to know which neighbours were touched;
// likewise each operation opens (sanitizer.hpp) the headers it touches.
#pragma once

#include "block.hpp"
#include "canary.hpp"

namespace osmem {

class BlockList {
 public:
  BlockMeta* head() const { return head_; }
  BlockMeta* tail() const { return tail_; }

  void push_back(const Sealer& sealer, BlockMeta* b) {
    const OpenHeader open_b(b), open_tail(tail_);
    b->prev = tail_;
    b->next = nullptr;
    sealer.seal(b);
    if (tail_ != nullptr) {
      tail_->next = b;
      sealer.seal(tail_);
    } else {
      head_ = b;
    }
    tail_ = b;
  }

  void insert_after(const Sealer& sealer, BlockMeta* pos, BlockMeta* b) {
    const OpenHeader open_pos(pos), open_b(b), open_next(pos->next);
    b->prev = pos;
    b->next = pos->next;
    sealer.seal(b);
    if (pos->next != nullptr) {
      pos->next->prev = b;
      sealer.seal(pos->next);
    } else {
      tail_ = b;
    }
    pos->next = b;
    sealer.seal(pos);
  }

  // Unlinks b; b's own fields are left as they were (a stale header).
  void unlink(const Sealer& sealer, BlockMeta* b) {
    const OpenHeader open_b(b), open_prev(b->prev), open_next(b->next);
    if (b->prev != nullptr) {
      b->prev->next = b->next;
      sealer.seal(b->prev);
    } else {
      head_ = b->next;
    }
    if (b->next != nullptr) {
      b->next->prev = b->prev;
      sealer.seal(b->next);
    } else {
      tail_ = b->prev;
    }
  }

 private:
  BlockMeta* head_ = nullptr;
  BlockMeta* tail_ = nullptr;
};

}  // namespace osmem
