// The summary as one line of JSON that people can read too: Boost.JSON writes every
// double in exponent form ("2E0"), this writes plain decimals ("2", "3.25").
#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace wsload {

std::string to_json_line(const boost::json::value& value);

}  // namespace wsload
