#include "check_level.hpp"

#include <cstdlib>

#include "report.hpp"

namespace osmem {
namespace {

// Matches `word` at the start of *text and moves past it.
bool take(const char*& text, const char* word) {
  const char* t = text;
  while (*word != '\0') {
    if (*t++ != *word++) return false;
  }
  text = t;
  return true;
}

// A decimal number >= 1 that fits in `max`; moves past its digits.
bool take_count(const char*& text, std::uint64_t max, std::uint64_t& out) {
  const char* t = text;
  std::uint64_t v = 0;
  if (*t < '0' || *t > '9') return false;
  while (*t >= '0' && *t <= '9') {
    const auto digit = static_cast<std::uint64_t>(*t - '0');
    if (v > (max - digit) / 10) return false;  // would pass max
    v = v * 10 + digit;
    ++t;
  }
  if (v == 0) return false;
  text = t;
  out = v;
  return true;
}

}  // namespace

bool parse_check_level(const char* text, CheckLevel& out) {
  if (text == nullptr) return false;
  CheckLevel level = out;
  const char* t = text;
  if (take(t, "off") || take(t, "0")) {
    level.mode = CheckMode::Off;
  } else if (take(t, "local")) {
    level.mode = CheckMode::Local;
  } else if (take(t, "sweep") || take(t, "on") || take(t, "1")) {
    level.mode = CheckMode::Sweep;
    level.sweep_blocks = kDefaultSweepBlocks;
    std::uint64_t k = 0;
    if (text[0] == 's' && *t == ':') {
      ++t;
      if (!take_count(t, UINT32_MAX, k)) return false;
      level.sweep_blocks = static_cast<std::uint32_t>(k);
    }
  } else if (take(t, "full")) {
    level.mode = CheckMode::Full;
  } else if (take(t, "every:")) {
    level.mode = CheckMode::Every;
    if (!take_count(t, UINT64_MAX, level.every)) return false;
    level.start = 1;
    if (*t == '@') {
      ++t;
      if (!take_count(t, UINT64_MAX, level.start)) return false;
    }
  } else {
    return false;
  }
  if (*t != '\0') return false;  // trailing characters: "fullx", "sweep:8x", "10"
  out = level;
  return true;
}

void format_check_level(const CheckLevel& level, char* buf, unsigned size) {
  if (size == 0) return;
  LineBuffer line;
  switch (level.mode) {
    case CheckMode::Off:
      line.text("off");
      break;
    case CheckMode::Local:
      line.text("local");
      break;
    case CheckMode::Sweep:
      line.text("sweep:").dec(level.sweep_blocks);
      break;
    case CheckMode::Full:
      line.text("full");
      break;
    case CheckMode::Every:
      line.text("every:").dec(level.every).text("@").dec(level.start);
      break;
  }
  unsigned n = 0;
  for (; n + 1 < size && n < line.size(); ++n) buf[n] = line.data()[n];
  buf[n] = '\0';
}

void read_check_level(CheckLevel& level) {
  const char* value = std::getenv("OSMEM_CHECK");
  if (value == nullptr || parse_check_level(value, level)) return;
  char current[48];
  format_check_level(level, current, sizeof current);
  LineBuffer line;
  line.text("osmem: OSMEM_CHECK=")
      .text(value)
      .text(" is not understood (valid: ")
      .text(kCheckLevelValues)
      .text("); using ")
      .text(current)
      .text("\n");
  line.flush(2);
}

}  // namespace osmem
