// Small string helpers. Debian's abseil is built with its own string_view type, so its StrCat
// does not take std::string_view; Cat does, plus integers.
#pragma once

#include <bit>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "xxhash.h"

namespace yrd {

namespace strings_internal {
template <typename T>
  requires requires(const T& t) {
    { t.data() } -> std::convertible_to<const char*>;
    { t.size() } -> std::convertible_to<size_t>;
  }
void Append(std::string& out, const T& piece) {
  out.append(piece.data(), piece.size());
}
inline void Append(std::string& out, const char* piece) { out.append(piece); }
inline void Append(std::string& out, char c) { out.push_back(c); }
template <std::integral T>
  requires(!std::same_as<T, char> && !std::same_as<T, bool>)
void Append(std::string& out, T value) {
  out.append(std::to_string(value));
}
}  // namespace strings_internal

template <typename... Pieces>
[[nodiscard]] std::string Cat(const Pieces&... pieces) {
  std::string out;
  (strings_internal::Append(out, pieces), ...);
  return out;
}

// Hash and equality that let a std::string-keyed flat_hash_map be searched with a
// std::string_view, without building a string per lookup.
struct StringHash {
  using is_transparent = void;
  // XXH3: Debian's abseil hashes a std::string_view through std::hash, which is slower.
  size_t operator()(std::string_view s) const { return XXH3_64bits(s.data(), s.size()); }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};
// The first 16 bytes of a string, zero-padded, as two big-endian integers. Ordering by them,
// then by the whole strings when they are equal, is bytewise order; a sort of many keys keeps
// them inline and touches the strings' memory only on a tie.
struct OrderPrefix {
  uint64_t high = 0, low = 0;
  // Spelled out: a defaulted comparison may become a memcmp call.
  bool operator==(const OrderPrefix& other) const { return high == other.high && low == other.low; }
  bool operator<(const OrderPrefix& other) const { return high != other.high ? high < other.high : low < other.low; }
};
[[nodiscard]] inline OrderPrefix OrderPrefixOf(std::string_view s) {
  static_assert(std::endian::native == std::endian::little, "the byte swap below reads big-endian");
  char bytes[16] = {};
  std::memcpy(bytes, s.data(), s.size() < sizeof bytes ? s.size() : sizeof bytes);
  uint64_t high = 0, low = 0;
  std::memcpy(&high, bytes, 8);
  std::memcpy(&low, bytes + 8, 8);
  return {__builtin_bswap64(high), __builtin_bswap64(low)};
}

template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringHash, StringEq>;

}  // namespace yrd
