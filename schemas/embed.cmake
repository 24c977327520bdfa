file(READ ${IN} text)
file(WRITE ${OUT} "#pragma once\n// Generated from events.fbs; do not edit.\nnamespace yrd::schema_text {\ninline constexpr char kEventsFbs[] = R\"yrdfbs(${text})yrdfbs\";\n}\n")
