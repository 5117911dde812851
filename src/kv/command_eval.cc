#include "kv/command_eval.h"

#include <algorithm>
#include <utility>
#include <vector>

namespace raftkv::kv {
namespace {

KeyValue ToKeyValue(const std::string& key, coding::KeyRecord rec) {
  KeyValue kv;
  kv.key = key;
  kv.value = std::move(rec.value);
  kv.create_revision = rec.create_revision;
  kv.mod_revision = rec.mod_revision;
  kv.version = rec.version;
  return kv;
}

}  // namespace

absl::StatusOr<EntryEffect> EvaluateCommand(StoreView& view, uint64_t index, int64_t revision,
                                            const kvpb::Command& cmd) {
  EntryEffect effect;
  ApplyResult& result = effect.result;
  result.revision = revision;
  effect.store_revision = revision;

  // Expiry, by log position only (every replica sees the same entries with the same stamp):
  // sessions whose last command is more than session_expiry_entries entries old go.
  bool own_session_expired = false;
  if (cmd.session_expiry_entries() > 0 && index > cmd.session_expiry_entries()) {
    absl::Status s = view.ForEachIdleSession(
        index - cmd.session_expiry_entries(), index, kMaxSessionsExpiredPerEntry,
        [&](uint64_t last_index, uint64_t client_id) {
          effect.expired_sessions.emplace_back(last_index, client_id);
          if (client_id == cmd.client_id()) own_session_expired = true;
        });
    if (!s.ok()) return s;
    for (const auto& [last_index, client_id] : effect.expired_sessions) {
      absl::StatusOr<std::optional<coding::SessionRecord>> expired = view.GetSession(client_id);
      if (!expired.ok()) return expired.status();
      effect.sessions_before.emplace(client_id, *std::move(expired));
    }
  }

  std::optional<coding::SessionRecord> session;
  if (cmd.client_id() != 0) {
    if (!own_session_expired) {
      absl::StatusOr<std::optional<coding::SessionRecord>> stored =
          view.GetSession(cmd.client_id());
      if (!stored.ok()) return stored.status();
      session = *std::move(stored);
      effect.sessions_before.emplace(cmd.client_id(), session);
      if (session) effect.replaced_session_last_index = session->last_index;
    }
    const uint64_t seq = cmd.sequence();
    if (session) {
      for (const auto& [kept_seq, first_result] : session->results) {
        if (kept_seq != seq) continue;
        // Applied before: the first result, again, and nothing written.
        absl::StatusOr<ApplyResult> first = coding::DecodeApplyResult(first_result);
        if (!first.ok()) return first.status();
        effect.result = *std::move(first);
        effect.result.duplicate = true;
        effect.replaced_session_last_index.reset();
        return effect;
      }
      if (seq < session->first_kept) {
        // Acknowledged by the client already, or pushed out of the window: its first result
        // is gone, so it is refused rather than applied a second time.
        result.session_refused = true;
        effect.replaced_session_last_index.reset();
        return effect;
      }
    }
  }

  const int64_t new_revision = revision + 1;
  bool changed = false;
  auto& overlay = effect.writes;
  auto& before = effect.writes_before;
  // Ops see the effect of the ops before them: reads go through the overlay first. Every key
  // enters the overlay after a read from the view, which `before` keeps.
  auto lookup = [&](const std::string& key) -> absl::StatusOr<std::optional<coding::KeyRecord>> {
    if (auto it = overlay.find(key); it != overlay.end()) return it->second;
    absl::StatusOr<std::optional<coding::KeyRecord>> stored = view.GetRecord(key);
    if (stored.ok()) before.emplace(key, *stored);
    return stored;
  };

  result.ops.reserve(cmd.ops_size());
  for (const kvpb::Op& op : cmd.ops()) {
    OpResult& out = result.ops.emplace_back();
    if (op.has_put()) {
      const kvpb::Put& put = op.put();
      absl::StatusOr<std::optional<coding::KeyRecord>> prev = lookup(put.key());
      if (!prev.ok()) return prev.status();
      coding::KeyRecord rec;
      rec.value = put.value();
      rec.mod_revision = new_revision;
      if (prev->has_value()) {
        rec.create_revision = (*prev)->create_revision;
        rec.version = (*prev)->version + 1;
        out.prev = ToKeyValue(put.key(), std::move(**prev));
      } else {
        rec.create_revision = new_revision;
        rec.version = 1;
      }
      overlay[put.key()] = std::move(rec);
      changed = true;
    } else if (op.has_delete_()) {
      const kvpb::Delete& del = op.delete_();
      if (del.range_end().empty()) {
        absl::StatusOr<std::optional<coding::KeyRecord>> prev = lookup(del.key());
        if (!prev.ok()) return prev.status();
        if (prev->has_value()) {
          out.deleted = 1;
          out.prev = ToKeyValue(del.key(), std::move(**prev));
          overlay[del.key()] = std::nullopt;
        }
      } else {
        const bool to_end = IsAllKeysEnd(del.range_end());
        if (!to_end && del.range_end() <= del.key()) continue;  // empty range
        auto in_range = [&](std::string_view k) {
          return k >= std::string_view(del.key()) &&
                 (to_end || k < std::string_view(del.range_end()));
        };
        std::vector<std::string> doomed;
        // Stored keys the overlay does not know; the overlay's own keys come next.
        absl::Status s = view.ForEachRecord(
            del.key(), del.range_end(), to_end, [&](std::string k, coding::KeyRecord rec) {
              if (overlay.contains(k)) return;
              before.emplace(k, std::move(rec));
              doomed.push_back(std::move(k));
            });
        if (!s.ok()) return s;
        for (auto o = overlay.lower_bound(del.key()); o != overlay.end() && in_range(o->first);
             ++o) {
          if (o->second.has_value()) doomed.push_back(o->first);
        }
        for (std::string& k : doomed) overlay[std::move(k)] = std::nullopt;
        out.deleted = static_cast<int64_t>(doomed.size());
      }
      if (out.deleted > 0) changed = true;
    }
    // An Op with neither field set does nothing.
  }
  if (changed) result.revision = new_revision;
  effect.store_revision = result.revision;

  if (cmd.client_id() != 0) {
    // Remember the first result of this sequence; drop what the client acknowledged and what
    // falls out of the window (the lowest sequences first).
    // (`session` is not used after this: its copy is in sessions_before.)
    coding::SessionRecord rec = std::move(session).value_or(coding::SessionRecord{});
    const uint64_t seq = cmd.sequence();
    const uint64_t window =
        cmd.session_window() == 0 ? kDefaultSessionWindow : cmd.session_window();
    rec.last_sequence = std::max(rec.last_sequence, seq);
    rec.last_index = index;
    rec.first_kept = std::max(rec.first_kept, std::min(cmd.first_unacked(), seq));
    auto pos = std::lower_bound(
        rec.results.begin(), rec.results.end(), seq,
        [](const std::pair<uint64_t, std::string>& r, uint64_t s) { return r.first < s; });
    if (cmd.session_keeps_prev()) {
      rec.results.insert(pos, {seq, coding::EncodeApplyResult(result)});
    } else {
      ApplyResult kept = result;
      for (OpResult& op : kept.ops) op.prev.reset();
      rec.results.insert(pos, {seq, coding::EncodeApplyResult(kept)});
    }
    while (!rec.results.empty() &&
           (rec.results.front().first < rec.first_kept || rec.results.size() > window)) {
      rec.first_kept = std::max(rec.first_kept, rec.results.front().first + 1);
      rec.results.erase(rec.results.begin());
    }
    effect.session = SessionEntry{cmd.client_id(), rec.last_sequence, rec.last_index,
                                  coding::EncodeSessionRecord(rec)};
  }
  return effect;
}

}  // namespace raftkv::kv
