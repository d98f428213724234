// Threads and standard containers, with a fixed output: the C++ runtime's
// operator new and delete reach whatever malloc the process has, so
// run_program.py runs this under glibc and under a preloaded malloc and
// compares what it prints.
//
//   cxx_threads N     each of 4 producer threads makes N strings
//
// Producers build maps, unordered maps, deques and lists of strings, then
// hand batches (vectors of strings, owned by unique_ptr) to 2 consumer
// threads through a shared queue, so most blocks are freed by a thread
// other than the one that made them. Each batch's summary is filed under
// (producer, batch number), so the output does not depend on scheduling.
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace {

constexpr int kProducers = 4;
constexpr int kConsumers = 2;
constexpr std::size_t kBatch = 1000;

struct Batch {
  int producer = 0;
  int number = 0;
  std::vector<std::string> items;
};

// FNV-1a: a fixed hash (std::hash may differ between library versions).
std::uint64_t fnv1a(const std::string& s, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

class BatchQueue {
 public:
  void push(std::unique_ptr<Batch> b) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(b));
    }
    ready_.notify_one();
  }
  void close() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    ready_.notify_all();
  }
  // Null once closed and drained.
  std::unique_ptr<Batch> pop() {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return closed_ || !queue_.empty(); });
    if (queue_.empty()) return nullptr;
    auto b = std::move(queue_.front());
    queue_.pop_front();
    return b;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::unique_ptr<Batch>> queue_;
  bool closed_ = false;
};

struct ProducerResult {
  std::size_t distinct = 0;
  std::uint64_t map_hash = 0;
  std::string first, last;
  std::size_t list_size = 0;
  std::size_t longest = 0;
};

ProducerResult produce(int id, int n, BatchQueue& queue) {
  std::uint64_t state = 0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(id + 1);
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  std::map<std::string, int> counts;
  std::unordered_map<std::string, std::vector<int>> positions;
  std::list<std::string> recent;
  std::string grown;
  auto batch = std::make_unique<Batch>();
  int batch_number = 0;
  for (int i = 0; i < n; ++i) {
    std::string s(1 + next() % 48, 'a');
    for (char& c : s) c = static_cast<char>('a' + next() % 7);
    ++counts[s];
    positions[s.substr(0, 3)].push_back(i);
    recent.push_back(s);
    if (recent.size() > 500) recent.pop_front();
    grown += s.substr(0, 2);
    if (grown.size() > 100000) grown.erase(0, 60000);
    batch->items.push_back(std::move(s));
    if (batch->items.size() == kBatch) {
      batch->producer = id;
      batch->number = batch_number++;
      queue.push(std::move(batch));
      batch = std::make_unique<Batch>();
    }
  }
  if (!batch->items.empty()) {
    batch->producer = id;
    batch->number = batch_number;
    queue.push(std::move(batch));
  }
  ProducerResult r;
  r.distinct = counts.size();
  for (const auto& [key, count] : counts) r.map_hash = fnv1a(key, r.map_hash) + count;
  r.first = counts.begin()->first;
  r.last = counts.rbegin()->first;
  r.list_size = recent.size();
  for (const auto& [prefix, where] : positions) r.longest = std::max(r.longest, where.size());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || std::atoi(argv[1]) <= 0) {
    std::fprintf(stderr, "usage: %s STRINGS_PER_PRODUCER\n", argv[0]);
    return 2;
  }
  const int n = std::atoi(argv[1]);
  BatchQueue queue;
  std::mutex summaries_mutex;
  std::map<std::pair<int, int>, std::pair<std::size_t, std::uint64_t>> summaries;

  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&] {
      while (auto b = queue.pop()) {
        std::uint64_t h = 0;
        std::size_t bytes = 0;
        for (const auto& s : b->items) {
          h = fnv1a(s, h);
          bytes += s.size();
        }
        std::lock_guard<std::mutex> lock(summaries_mutex);
        summaries[{b->producer, b->number}] = {bytes, h};
      }  // the batch and its strings are freed here, by this thread
    });
  }
  std::vector<ProducerResult> results(kProducers);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p)
    producers.emplace_back([&, p] { results[p] = produce(p, n, queue); });
  for (auto& t : producers) t.join();
  queue.close();
  for (auto& t : consumers) t.join();

  for (int p = 0; p < kProducers; ++p) {
    const auto& r = results[p];
    std::printf("producer %d: distinct %zu map %016llx first %s last %s list %zu longest %zu\n", p,
                r.distinct, static_cast<unsigned long long>(r.map_hash), r.first.c_str(),
                r.last.c_str(), r.list_size, r.longest);
  }
  std::uint64_t total = 0;
  std::size_t bytes = 0;
  for (const auto& [key, value] : summaries) {
    bytes += value.first;
    total = total * 31 + value.second;
  }
  std::printf("batches %zu bytes %zu hash %016llx\n", summaries.size(), bytes,
              static_cast<unsigned long long>(total));
  return 0;
}
