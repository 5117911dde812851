#include "raft/read_index.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "raft/quorum.h"

namespace raftkv::raft {
namespace {

std::string EncodeRound(uint64_t round) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((round >> (8 * i)) & 0xff);
  return s;
}

std::optional<uint64_t> DecodeRound(const std::string& s) {
  if (s.size() != 8) return std::nullopt;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[i])) << (8 * i);
  return v;
}

}  // namespace

void ReadIndexTracker::WaitForCommit(std::string context, uint64_t from) {
  waiting_for_commit_.push_back(Read{std::move(context), from, 0});
}

std::vector<ReadIndexTracker::Read> ReadIndexTracker::TakeWaitingForCommit() {
  std::vector<Read> waiting = std::move(waiting_for_commit_);
  waiting_for_commit_.clear();
  return waiting;
}

bool ReadIndexTracker::Admit(Read read) {
  // The next round either way: a round in flight may have sent its heartbeats before this
  // read arrived, so its echo would not prove leadership after the read.
  pending_.push_back(Pending{std::move(read), round_ + 1});
  if (round_ > confirmed_round_) return false;  // it starts when the current one completes
  ++round_;
  return true;
}

std::string ReadIndexTracker::RoundContext() const {
  return round_ > confirmed_round_ ? EncodeRound(round_) : std::string();
}

ReadIndexTracker::AckResult ReadIndexTracker::OnHeartbeatAck(absl::Span<const uint64_t> voters,
                                                             uint64_t self, uint64_t from,
                                                             const std::string& context) {
  AckResult result;
  std::optional<uint64_t> round = DecodeRound(context);
  if (!round || *round > round_) return result;
  uint64_t& acked = acks_[from];
  acked = std::max(acked, *round);
  const uint64_t confirmed = quorum::CommittedIndex(voters, [&](uint64_t id) {
    if (id == self) return round_;
    auto it = acks_.find(id);
    return it == acks_.end() ? uint64_t{0} : it->second;
  });
  if (confirmed <= confirmed_round_) return result;
  confirmed_round_ = confirmed;
  std::vector<Pending> rest;
  for (Pending& p : pending_) {
    if (p.round <= confirmed) {
      result.released.push_back(std::move(p.read));
    } else {
      rest.push_back(std::move(p));
    }
  }
  pending_ = std::move(rest);
  // Reads admitted during the confirmed round wait for the next one: start it.
  if (!pending_.empty() && round_ == confirmed_round_) {
    ++round_;
    result.start_round = true;
  }
  return result;
}

void ReadIndexTracker::Reset() {
  pending_.clear();
  waiting_for_commit_.clear();
  acks_.clear();
  confirmed_round_ = round_;
}

}  // namespace raftkv::raft
